-- t4 at scale: all trucks, the last of the 7 loaded days, hourly mean speed per fleet.
SELECT fleet, time_bucket(INTERVAL '1 hour', time) AS bucket, avg(velocity) AS mean_velocity
FROM readings
WHERE time >= '2024-01-07T00:00:00Z' AND time < '2024-01-08T00:00:00Z'
GROUP BY fleet, bucket
ORDER BY fleet, bucket
