SELECT device, sum(CASE WHEN temp >= 25 THEN 1 ELSE 0 END) AS hot, sum(CASE WHEN temp < 20 THEN 1 ELSE 0 END) AS cold FROM env GROUP BY device ORDER BY device
