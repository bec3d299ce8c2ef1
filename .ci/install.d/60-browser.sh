# Sourced by .ci/run: headless Chromium and playwright-core for the web console test
# (tests/tests/console.rs runs tests/console/console_test.mjs). playwright-core goes into
# tests/console/node_modules (gitignored); it drives Debian's /usr/bin/chromium, no browser download.
# Chromium and Node are installed separately: a machine with NodeSource's nodejs (which bundles
# npm and conflicts with Debian's npm package) only needs the browser.
if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
if [ ! -d tests/console/node_modules/playwright-core ]; then
    (cd tests/console && npm ci --no-audit --no-fund --silent)
fi
