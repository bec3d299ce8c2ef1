-- TSBS iot daily-activity (DailyTruckActivity): per fleet, model and day, the activity of trucks
-- in ten-minute periods without faults (average status under 1), as in TSBS: the number of
-- diagnostics in those periods / 144. (PostgreSQL's sum(bigint) is numeric, so TSBS divides
-- exactly; `144.0` does the same here.)
SELECT fleet, model, day, sum(ten_mins_per_day) / 144.0 AS daily_activity
FROM (
    SELECT fleet, model, device, time_bucket(INTERVAL '24 hours', time) AS day,
           time_bucket(INTERVAL '10 minutes', time) AS ten_minutes, count(*) AS ten_mins_per_day
    FROM diagnostics
    GROUP BY fleet, model, device, day, ten_minutes
    HAVING avg(status) < 1
) y
GROUP BY fleet, model, day
ORDER BY day, fleet, model
