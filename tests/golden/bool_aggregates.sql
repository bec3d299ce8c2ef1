SELECT device, bool_and(ok) AS all_ok, bool_or(ok) AS any_ok, count(*) FILTER (WHERE ok) AS n_ok, count(*) FILTER (WHERE NOT ok) AS n_not_ok FROM env GROUP BY device ORDER BY device
