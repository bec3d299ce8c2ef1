-- Issue target (≤ 0.3 ms): one truck, 4 hours, 10-minute mean speed.
SELECT time_bucket(INTERVAL '10 minutes', time) AS bucket, avg(velocity) AS mean_velocity
FROM readings
WHERE device = 'truck_42' AND time >= '2024-01-01T06:00:00Z' AND time < '2024-01-01T10:00:00Z'
GROUP BY bucket
ORDER BY bucket
