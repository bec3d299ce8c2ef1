-- TSBS iot avg-load (AvgLoad): per fleet and model, the average of each truck's average load as
-- a share of its model's load capacity (the `models` table of 03-high-load.sql).
WITH models(model, load_capacity) AS (
    VALUES ('F-150', 20000.0), ('G-2000', 50000.0), ('H-2', 15000.0)
), d AS (
    SELECT fleet, model, device, avg(current_load) AS avg_load
    FROM diagnostics
    GROUP BY fleet, model, device
)
SELECT d.fleet, d.model, m.load_capacity, avg(d.avg_load / m.load_capacity) AS avg_load_percentage
FROM d JOIN models m ON d.model = m.model
GROUP BY d.fleet, d.model, m.load_capacity
ORDER BY d.fleet, d.model
