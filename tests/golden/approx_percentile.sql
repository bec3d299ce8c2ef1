SELECT approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY temp) AS p50, approx_median(hum) AS median_hum FROM env
