SELECT device, time, count FROM env ORDER BY count, device LIMIT 4 OFFSET 2
