# Sourced by .ci/run: MQTT broker and clients, curl.
if ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v mosquitto >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    apt_install mosquitto mosquitto-clients curl
fi
