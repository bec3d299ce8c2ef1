-- TSBS iot last-loc (LastLocPerTruck): latest position of every truck of one fleet.
SELECT device AS name, driver, last(longitude, time) AS longitude, last(latitude, time) AS latitude
FROM readings
WHERE fleet = 'North'
GROUP BY device, driver
ORDER BY name
