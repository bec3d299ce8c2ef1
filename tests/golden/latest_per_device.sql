WITH latest AS (SELECT device, max(time) AS t FROM env GROUP BY device) SELECT e.device, e.time, e.temp, e.hum FROM env e JOIN latest l ON e.device = l.device AND e.time = l.t ORDER BY e.device
