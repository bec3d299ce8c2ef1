-- DuckDB spelling: last(x, time) is arg_max(x, time); integer division is //.
-- TSBS iot last-loc (LastLocPerTruck): latest position of every truck of one fleet.
SELECT device AS name, driver, arg_max(longitude, time) AS longitude, arg_max(latitude, time) AS latitude
FROM readings
WHERE fleet = 'North'
GROUP BY device, driver
ORDER BY name
