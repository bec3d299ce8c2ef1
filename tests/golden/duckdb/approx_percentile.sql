-- tolerance: 0.02
-- DuckDB has no approx_percentile_cont: compare the t-digest answer with the exact percentile.
SELECT quantile_cont(temp, 0.5) AS p50, quantile_cont(hum, 0.5) AS median_hum FROM env
