SELECT device, sum(count) AS total, min(count) AS lo, max(count) AS hi, max(count) - min(count) AS spread, avg(count) AS mean FROM env GROUP BY device ORDER BY device
