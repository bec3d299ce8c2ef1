-- TSBS iot avg-vs-projected-fuel-consumption (AvgVsProjectedFuelConsumption): per fleet, the
-- average fuel consumption while moving against the model's nominal consumption (TSBS's
-- per-model specification: F-150 15, G-2000 19, H-2 12), averaged over the same readings.
WITH models(model, nominal_fuel_consumption) AS (
    VALUES ('F-150', 15.0), ('G-2000', 19.0), ('H-2', 12.0)
)
SELECT r.fleet, avg(r.fuel_consumption) AS avg_fuel_consumption,
       avg(m.nominal_fuel_consumption) AS projected_fuel_consumption
FROM readings r JOIN models m ON r.model = m.model
WHERE r.velocity > 1
GROUP BY r.fleet
ORDER BY r.fleet
