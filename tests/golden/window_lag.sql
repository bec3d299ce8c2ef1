SELECT time, temp, temp - lag(temp) OVER (ORDER BY time) AS delta, row_number() OVER (ORDER BY time DESC) AS newest_rank FROM env WHERE device = 'd3' ORDER BY time
