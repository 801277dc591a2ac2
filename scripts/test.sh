#!/usr/bin/env bash
# Sluice's whole test suite, as CI runs it: system packages, formatting,
# clippy, then every test. The Kubernetes tests need the real API server built
# from Go modules (scripts/k8s-test-env.sh): with Go on the machine it is built
# into a cache outside the repository (first time about 6–7 minutes) and
# started for the run; without Go those tests say why they skipped, except
# under CI=true, where they fail. The Helm chart is checked after the Rust
# tests against the same server (scripts/chart-test.sh: rendered with Helm's
# engine built from Go modules, validated with kubernetes-validate, applied).
# Then the dashboard's browser tests (scripts/browser-test.sh) and a 30-second
# run of each fuzz target (scripts/fuzz-smoke.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
export PATH=$HOME/.cargo/bin:$PATH

cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --locked --all-targets -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if bash scripts/k8s-test-env.sh build; then
	bash scripts/k8s-test-env.sh run --no-build -- bash -c '
		kubectl --kubeconfig "$KUBECONFIG" get --raw /version && echo
		cargo test --locked && bash scripts/chart-test.sh' 2>&1 | tee "$log"
else
	status=$?
	if [[ ${CI:-} == true ]]; then
		echo "test: the Kubernetes test server could not be built (exit $status)" >&2
		exit 1
	fi
	echo "test: no Kubernetes test server (needs Go); its tests will skip" >&2
	cargo test --locked 2>&1 | tee "$log"
	bash scripts/chart-test.sh 2>&1 | tee -a "$log"
fi

# The dashboard in a real browser (Playwright driving Debian's Chromium)
# against real `sluice run` servers, with the binary the tests just built.
SLUICE_BIN=$PWD/target/debug/sluice bash scripts/browser-test.sh 2>&1 | tee -a "$log"

# Every fuzz target for 30 s from its corpus (fuzz/README.md); the build is
# cached outside the repository.
bash scripts/fuzz-smoke.sh 2>&1 | tee -a "$log"

# One closing line over every test binary, the chart checks, the browser
# tests and the fuzz targets.
awk '/^test result:|^(chart|browser|fuzz): [0-9]+ passed, [0-9]+ failed$/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
	END { printf "%d passed, %d failed\n", p, f }' "$log"
