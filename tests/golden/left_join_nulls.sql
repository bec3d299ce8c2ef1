SELECT p.device, p.time, p.volts, e.temp, e.note FROM power p LEFT JOIN env e ON e.device = p.device AND e.time = p.time ORDER BY p.device, p.time
