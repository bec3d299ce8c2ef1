-- TSBS iot stationary-trucks (StationaryTrucks): trucks of one fleet with an average velocity
-- under 1 in a 10-minute window.
SELECT device AS name, driver
FROM readings
WHERE time >= '2024-01-01T12:00:00Z' AND time < '2024-01-01T12:10:00Z' AND fleet = 'North'
GROUP BY device, driver
HAVING avg(velocity) < 1
ORDER BY name
