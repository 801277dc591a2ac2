#!/usr/bin/env bash
# Prints the node_modules directory holding the playwright-core that
# scripts/install-deps.sh installs into the cache (keyed by the version in
# tests/browser/playwright-core.version), for NODE_PATH. Exits 1 (path still
# printed) when it is not installed yet.
set -euo pipefail
version=$(tr -d '[:space:]' <"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/browser/playwright-core.version")
prefix=${XDG_CACHE_HOME:-$HOME/.cache}/sluice/node/playwright-core-$version
echo "$prefix/node_modules"
[[ -f $prefix/.complete ]]
