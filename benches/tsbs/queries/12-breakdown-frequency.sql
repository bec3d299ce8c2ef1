-- TSBS iot breakdown-frequency (TruckBreakdownFrequency): per model, how often a truck went from
-- working to broken down between two consecutive ten-minute periods. TSBS writes
-- `count(STATUS = 0) / count(*) >= 0.5`, which in PostgreSQL counts every row (so every period is
-- "broken down" and the answer is always empty); this query uses the evident intent, a period is
-- broken down when more than 5% of its diagnostics report a non-zero status (the simulator's
-- fault rate is 3%).
WITH breakdown_per_truck_per_ten_minutes AS (
    SELECT model, device, time_bucket(INTERVAL '10 minutes', time) AS ten_minutes,
           avg(CASE WHEN status <> 0 THEN 1.0 ELSE 0.0 END) > 0.05 AS broken_down
    FROM diagnostics
    GROUP BY model, device, ten_minutes
), breakdowns_per_truck AS (
    SELECT model, device, ten_minutes, broken_down,
           lead(broken_down) OVER (PARTITION BY device ORDER BY ten_minutes) AS next_broken_down
    FROM breakdown_per_truck_per_ten_minutes
)
SELECT model, count(*) AS breakdowns
FROM breakdowns_per_truck
WHERE broken_down = false AND next_broken_down = true
GROUP BY model
ORDER BY model
