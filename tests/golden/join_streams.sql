SELECT e.device, e.time, e.temp, p.volts, p.charging FROM env e JOIN power p ON e.device = p.device AND e.time = p.time ORDER BY e.device, e.time
