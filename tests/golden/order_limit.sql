SELECT device, time, temp FROM env WHERE temp IS NOT NULL ORDER BY temp DESC, device LIMIT 3
