SELECT device, time, temp FROM env WHERE fleet = 'south' AND temp > 25 ORDER BY device, time
