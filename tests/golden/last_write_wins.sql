SELECT time, temp, count, ok, note FROM env WHERE device = 'd4' ORDER BY time
