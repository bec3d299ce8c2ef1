SELECT time, device, count FROM env WHERE time >= '2024-01-01T00:05:00Z' AND time < '2024-01-01T00:20:00Z' ORDER BY time, device
