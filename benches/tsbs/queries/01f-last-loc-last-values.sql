-- 01-last-loc through the last-value cache (`last_values`, docs/sql.md "Last values"): same answer.
SELECT device AS name, driver, longitude, latitude
FROM last_values('readings')
WHERE fleet = 'North'
ORDER BY name
