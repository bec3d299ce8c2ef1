SELECT device, count(*) AS n, count(temp) AS n_temp, count(hum) AS n_hum, count(ok) AS n_ok, count(note) AS n_note FROM env GROUP BY device ORDER BY device
