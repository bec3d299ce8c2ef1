-- 03-high-load through the last-value cache (`last_values`): same answer.
WITH models(model, load_capacity) AS (
    VALUES ('F-150', 20000.0), ('G-2000', 50000.0), ('H-2', 15000.0)
)
SELECT l.device AS name, l.driver, l.current_load
FROM last_values('diagnostics') l JOIN models m ON l.model = m.model
WHERE l.fleet = 'North' AND l.current_load / m.load_capacity > 0.9
ORDER BY name
