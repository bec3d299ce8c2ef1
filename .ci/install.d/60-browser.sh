# Sourced by .ci/run: headless Chromium and playwright-core for the web console test
# (tests/tests/console.rs runs tests/console/console_test.mjs). playwright-core goes into
# tests/console/node_modules (gitignored); it drives Debian's /usr/bin/chromium, no browser download.
if ! command -v chromium >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    apt_install chromium nodejs npm
fi
if [ ! -d tests/console/node_modules/playwright-core ]; then
    (cd tests/console && npm ci --no-audit --no-fund --silent)
fi
