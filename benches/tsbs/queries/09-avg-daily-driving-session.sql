-- TSBS iot avg-daily-driving-session (AvgDailyDrivingSession): per truck and day, the average
-- length (seconds) of a driving session (consecutive ten-minute periods with an average velocity
-- over 5), from one status change to the next.
WITH driver_status AS (
    SELECT device, time_bucket(INTERVAL '10 minutes', time) AS ten_minutes,
           avg(velocity) > 5 AS driving
    FROM readings
    GROUP BY device, ten_minutes
), driver_status_change AS (
    SELECT device, ten_minutes AS start,
           lead(ten_minutes) OVER (PARTITION BY device ORDER BY ten_minutes) AS stop, driving
    FROM (
        SELECT device, ten_minutes, driving,
               lag(driving) OVER (PARTITION BY device ORDER BY ten_minutes) AS prev_driving
        FROM driver_status
    ) x
    WHERE x.driving <> x.prev_driving
)
SELECT device AS name, time_bucket(INTERVAL '24 hours', start) AS day,
       avg(date_part('epoch', stop) - date_part('epoch', start)) AS duration_s
FROM driver_status_change
WHERE driving = true
GROUP BY device, day
ORDER BY name, day
