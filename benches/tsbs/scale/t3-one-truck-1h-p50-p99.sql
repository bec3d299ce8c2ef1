-- Issue target (≤ 0.3 ms): one truck, 1 hour, exact p50 and p99 of speed.
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY velocity) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY velocity) AS p99
FROM readings
WHERE device = 'truck_42' AND time >= '2024-01-01T06:00:00Z' AND time < '2024-01-01T07:00:00Z'
