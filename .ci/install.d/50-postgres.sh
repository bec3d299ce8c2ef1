# Sourced by .ci/run: PostgreSQL wire-protocol clients for tests/tests/pg_wire.rs (psql, psycopg,
# SQLAlchemy, pandas).
if ! command -v psql >/dev/null 2>&1; then
    apt_install postgresql-client
fi
python3 -c "import psycopg, sqlalchemy, pandas" 2>/dev/null \
    || python3 -m pip install -q "psycopg[binary]>=3.1,<4" "sqlalchemy>=2,<3" pandas
