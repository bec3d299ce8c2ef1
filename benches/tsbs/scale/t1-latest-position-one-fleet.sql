-- Issue target (≤ 0.5 ms): latest position of every truck in one fleet, from the last-value cache.
SELECT device, latitude, longitude
FROM last_values('readings')
WHERE fleet = 'North'
ORDER BY device
