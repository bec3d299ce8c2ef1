-- Issue target (≤ 5 ms): all trucks, 24 hours, hourly mean speed per fleet.
SELECT fleet, time_bucket(INTERVAL '1 hour', time) AS bucket, avg(velocity) AS mean_velocity
FROM readings
GROUP BY fleet, bucket
ORDER BY fleet, bucket
