-- TSBS iot long-daily-sessions (TrucksWithLongDailySessions): trucks of one fleet that drove in
-- more than 60 ten-minute periods (10 hours) of 24 hours.
SELECT device AS name, driver
FROM (
    SELECT device, driver, time_bucket(INTERVAL '10 minutes', time) AS ten_minutes
    FROM readings
    WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-02T00:00:00Z' AND fleet = 'North'
    GROUP BY device, driver, ten_minutes
    HAVING avg(velocity) > 1
) r
GROUP BY device, driver
HAVING count(ten_minutes) > 60
ORDER BY name
