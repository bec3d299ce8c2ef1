-- DuckDB spelling: last(x, time) is arg_max(x, time); integer division is //.
-- TSBS iot high-load (TrucksWithHighLoad): trucks of one fleet whose latest load is over 90% of
-- their model's load capacity. TSBS keeps the capacity in its tags table; here `models` holds
-- TSBS's per-model specification (F-150 2000, G-2000 5000, H-2 1500 kg) x 10 to match the
-- simulator's load unit.
WITH models(model, load_capacity) AS (
    VALUES ('F-150', 20000.0), ('G-2000', 50000.0), ('H-2', 15000.0)
), latest AS (
    SELECT device, driver, model, arg_max(current_load, time) AS current_load
    FROM diagnostics
    WHERE fleet = 'North'
    GROUP BY device, driver, model
)
SELECT l.device AS name, l.driver, l.current_load
FROM latest l JOIN models m ON l.model = m.model
WHERE l.current_load / m.load_capacity > 0.9
ORDER BY name
