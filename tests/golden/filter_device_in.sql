SELECT device, time, hum FROM env WHERE device IN ('d2', 'd4') AND hum BETWEEN 30 AND 54.5 ORDER BY device, time
