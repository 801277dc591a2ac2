#!/usr/bin/env bash
# Sluice's main job on the bundled example, on one machine with no cluster:
# `sluice run` follows this checkout's branch, validates examples/config-repo,
# renders every gateway's desired state and pushes it into the example's file
# gateways (under .sluice-demo/gateways), keeping the ledger in
# .sluice-demo/state.db; then `sluice status` shows which version runs where.
# The eval environment's file is also run by an enforcing reference gateway
# (`sluice gateway --watch`), so its suites (examples/config-repo/evals) run
# after its sync and their results are shown. It ends by printing the URL of
# the dashboard `sluice run` serves (and, on a terminal, keeps it running
# until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH=$HOME/.cargo/bin:$PATH
cargo build --locked --release --quiet --bin sluice
sluice=$PWD/target/release/sluice
repo=examples/config-repo
data=.sluice-demo
# A fresh ledger each time, so what `status` shows is this run's.
rm -rf "$data"
branch=$(git rev-parse --abbrev-ref HEAD)
# The operator's allowances (deny-by-default): production's alert may name
# its PROD_* variable, and the eval environment's suites may reach its
# gateway's chat endpoint on loopback.
export SLUICE_ALLOW_ENV='production=PROD_*'
export SLUICE_ALLOW_URL='eval=http://127.0.0.1:*'

echo "== sluice validate --repo $repo"
$sluice validate --repo "$repo"

echo
echo "== sluice gateway --watch $data/gateways/eval/eval-1.json --listen 127.0.0.1:18490"
# The gateway behind the eval environment's file: it runs what Sluice
# writes there and enforces it on POST /v1/chat/completions (echo upstream),
# where the suites in $repo/evals reach it.
$sluice gateway --ephemeral --listen 127.0.0.1:18490 --watch "$data/gateways/eval/eval-1.json" >/dev/null &
gateway=$!

echo
echo "== sluice run --repo $repo --branch $branch --data-dir $data"
mkdir -p "$data"
$sluice run --repo "$repo" --branch "$branch" --data-dir "$data" --listen "${SLUICE_DEMO_LISTEN:-127.0.0.1:0}" --interval 30s > >(tee "$data/run.out") &
run=$!
trap 'kill -TERM $run $gateway 2>/dev/null; wait $run $gateway 2>/dev/null || true' EXIT
# Until the first pass applied everything and the eval environment's suites ran.
for _ in $(seq 1 300); do
	if $sluice history eval --evals --data-dir "$data" -o json 2>/dev/null | grep -q '"suite"'; then break; fi
	sleep 0.2
done

echo
echo "== sluice status --data-dir $data"
$sluice status --data-dir "$data"
echo
echo "== sluice history production --data-dir $data"
$sluice history production --data-dir "$data"
echo
echo "== sluice history eval --evals --data-dir $data   (the suites run after the eval environment's sync)"
$sluice history eval --evals --data-dir "$data"
echo
echo "== sluice eval eval --repo $repo   (the same suites, on demand)"
$sluice eval eval --repo "$repo" || true
echo
echo "== what the production gateway now runs ($data/gateways/production/prod-eu-1.json)"
head -c 300 "$data/gateways/production/prod-eu-1.json"
echo " …"

# The dashboard of the running `sluice run`: which version runs where, drift,
# promotions, history (read-only: the demo sets no API tokens).
dashboard=$(sed -n 's/^dashboard: //p' "$data/run.out" | head -1)
echo
echo "== the dashboard: $dashboard"
if [[ -t 0 && -t 1 ]]; then
	echo "   (open it in a browser; Ctrl-C stops the demo)"
	wait $run
fi
