-- TSBS iot long-driving-sessions (TrucksWithLongDrivingSessions): trucks of one fleet that drove
-- (10-minute average velocity over 1) in more than 22 of the 24 ten-minute periods of 4 hours.
SELECT device AS name, driver
FROM (
    SELECT device, driver, time_bucket(INTERVAL '10 minutes', time) AS ten_minutes
    FROM readings
    WHERE time >= '2024-01-01T08:00:00Z' AND time < '2024-01-01T12:00:00Z' AND fleet = 'North'
    GROUP BY device, driver, ten_minutes
    HAVING avg(velocity) > 1
) r
GROUP BY device, driver
HAVING count(ten_minutes) > 22
ORDER BY name
