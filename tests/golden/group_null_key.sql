SELECT model, count(DISTINCT device) AS devices, count(*) AS n FROM env GROUP BY model HAVING count(*) > 1 ORDER BY model NULLS LAST
