-- 02-low-fuel through the last-value cache (`last_values`): same answer.
SELECT device AS name, driver, fuel_state
FROM last_values('diagnostics')
WHERE fleet = 'North' AND fuel_state < 0.1
ORDER BY name
