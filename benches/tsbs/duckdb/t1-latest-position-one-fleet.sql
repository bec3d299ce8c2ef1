-- DuckDB spelling of t1: the newest non-null latitude/longitude of each truck of the fleet.
SELECT device, arg_max(latitude, time) FILTER (WHERE latitude IS NOT NULL) AS latitude,
       arg_max(longitude, time) FILTER (WHERE longitude IS NOT NULL) AS longitude
FROM readings
WHERE fleet = 'North'
GROUP BY device
ORDER BY device
