SELECT device, first(temp, time) AS first_temp, last(temp, time) AS last_temp, first(note, time) AS first_note, last(note, time) AS last_note FROM env GROUP BY device ORDER BY device
