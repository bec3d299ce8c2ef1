-- DuckDB spelling of t1n: each truck's newest row (its position there, null if that row has none).
SELECT device, latitude, longitude
FROM (SELECT device, latitude, longitude,
             row_number() OVER (PARTITION BY device ORDER BY time DESC) AS rn
      FROM readings
      WHERE fleet = 'North')
WHERE rn = 1
ORDER BY device
