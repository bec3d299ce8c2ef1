-- TSBS iot avg-daily-driving-duration (AvgDailyDrivingDuration): per truck, the average number of
-- whole hours per day it drove (ten-minute periods with an average velocity over 1, / 6).
WITH ten_minute_driving_sessions AS (
    SELECT fleet, device, driver, time_bucket(INTERVAL '10 minutes', time) AS ten_minutes
    FROM readings
    GROUP BY fleet, device, driver, ten_minutes
    HAVING avg(velocity) > 1
), daily_total_session AS (
    SELECT fleet, device, driver, time_bucket(INTERVAL '24 hours', ten_minutes) AS day,
           count(*) / 6 AS hours
    FROM ten_minute_driving_sessions
    GROUP BY fleet, device, driver, day
)
SELECT fleet, device AS name, driver, avg(hours) AS avg_daily_hours
FROM daily_total_session
GROUP BY fleet, device, driver
ORDER BY fleet, name, driver
