SELECT time_bucket(INTERVAL '10 minutes', time) AS bucket, count(*) AS n, avg(temp) AS mean_temp, max(hum) AS max_hum FROM env GROUP BY bucket ORDER BY bucket
