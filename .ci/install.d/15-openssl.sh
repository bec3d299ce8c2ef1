# Sourced by .ci/run: the `openssl` command line makes the CA and device certificates of the enrollment tests
# (tests/src/lib.rs), independently of the server's own rcgen code.
if ! command -v openssl >/dev/null 2>&1; then
    apt_install openssl
fi
