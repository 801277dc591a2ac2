#!/usr/bin/env bash
# The dashboard's tests in a real browser: playwright-core (cached by
# scripts/install-deps.sh, pinned in tests/browser/playwright-core.version)
# drives Debian's headless /usr/bin/chromium against real `sluice run`
# servers and reference gateways (tests/browser/harness.mjs). Builds
# target/debug/sluice unless SLUICE_BIN names a binary. Screenshots go to
# target/browser/ and are compared with docs/dashboard-*.png
# (SLUICE_UPDATE_SCREENSHOTS=1 rewrites those). Ends with one line
# `browser: N passed, M failed`; exits non-zero when a test failed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh browser
export PATH=$HOME/.cargo/bin:$PATH
if [[ -z ${SLUICE_BIN:-} ]]; then
	cargo build --locked --bin sluice
fi
NODE_PATH=$(bash scripts/browser-env.sh)
export NODE_PATH PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
node --test --test-reporter=spec tests/browser/ 2>&1 | tee "$log" || status=$?
awk '/^[^ ]+ pass [0-9]+$/ { p = $NF } /^[^ ]+ (fail|cancelled) [0-9]+$/ { f += $NF } END { printf "browser: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
