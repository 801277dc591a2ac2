#!/usr/bin/env bash
# Validation of the 10,000-pack repository against its peer, in one run
# (issue 18): installs check-jsonschema 0.39 into a cached virtualenv
# (`scripts/install-deps.sh bench`, keyed by benches/validate/requirements.txt)
# and runs `cargo bench --bench config` with it on PATH, so the config bench
# times `sluice validate --rev HEAD` and check-jsonschema on the same files
# with the same schemas, in turn, and prints the ratio. Usage:
#
#   bash benches/validate/bench.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/install-deps.sh bench >/dev/null
requirements=benches/validate/requirements.txt
venv=${XDG_CACHE_HOME:-$HOME/.cache}/sluice/py/check-jsonschema-$(sha256sum <"$requirements" | cut -c1-12)
export PATH=$venv/bin:$HOME/.cargo/bin:$PATH
exec cargo bench --locked --bench config
