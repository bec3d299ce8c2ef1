SELECT fleet, percentile_cont(0.5) WITHIN GROUP (ORDER BY temp) AS p50, percentile_cont(0.9) WITHIN GROUP (ORDER BY temp) AS p90, median(hum) AS median_hum FROM env GROUP BY fleet ORDER BY fleet
