SELECT date_trunc('hour', time) AS hour, date_part('minute', time) AS minute, count(*) AS n FROM env WHERE fleet = 'north' GROUP BY hour, minute ORDER BY hour, minute
