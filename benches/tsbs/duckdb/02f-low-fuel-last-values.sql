-- DuckDB spelling: last(x, time) is arg_max(x, time); integer division is //.
-- TSBS iot low-fuel (TrucksWithLowFuel): trucks of one fleet whose latest fuel state is under 10%.
SELECT name, driver, fuel_state
FROM (
    SELECT device AS name, driver, arg_max(fuel_state, time) AS fuel_state
    FROM diagnostics
    WHERE fleet = 'North'
    GROUP BY device, driver
) latest
WHERE fuel_state < 0.1
ORDER BY name
