SELECT device FROM env UNION SELECT device FROM power ORDER BY device
