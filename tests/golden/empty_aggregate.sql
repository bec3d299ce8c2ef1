SELECT count(*) AS n, sum(temp) AS total, max(time) AS newest FROM env WHERE time > '2030-01-01T00:00:00Z'
