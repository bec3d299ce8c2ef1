-- Issue target (≤ 0.5 ms): t1 written as natural SQL, answered from the last-value cache (LastRowExec).
SELECT device, last_value(latitude ORDER BY time) AS latitude, last_value(longitude ORDER BY time) AS longitude
FROM readings
WHERE fleet = 'North'
GROUP BY device
ORDER BY device
