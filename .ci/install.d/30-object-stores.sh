# Sourced by .ci/run: object-store emulators for the cold-tier tests (tests/tests/cold.rs):
# the moto server (S3) and Azurite (Azure Blob, on the machine's Node 20).
command -v moto_server >/dev/null 2>&1 || python3 -m pip install -q "moto[server]"
if ! command -v azurite-blob >/dev/null 2>&1; then
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    npm install -g --silent azurite@3.35.0
fi
