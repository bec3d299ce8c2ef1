# Sourced by .ci/run: Python test clients (paho-mqtt, pyarrow, ADBC Flight SQL, DuckDB).
python3 -c "import paho.mqtt, pyarrow.flight, adbc_driver_flightsql.dbapi, duckdb" 2>/dev/null \
    || python3 -m pip install -q "paho-mqtt>=2,<3" pyarrow adbc-driver-flightsql adbc-driver-manager duckdb
