#!/usr/bin/env bash
# Sluice's main job on the bundled example, on one machine with no cluster:
# `sluice run` follows this checkout's branch, validates examples/config-repo,
# renders every gateway's desired state and pushes it into the example's file
# gateways (under .sluice-demo/gateways), keeping the ledger in
# .sluice-demo/state.db; then `sluice status` shows which version runs where.
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
# its PROD_* variable; the example's gateways are files, so no URL is needed.
export SLUICE_ALLOW_ENV='production=PROD_*'

echo "== sluice validate --repo $repo"
$sluice validate --repo "$repo"

echo
echo "== sluice run --repo $repo --branch $branch --data-dir $data"
$sluice run --repo "$repo" --branch "$branch" --data-dir "$data" --listen 127.0.0.1:0 --interval 30s &
run=$!
trap 'kill -TERM $run 2>/dev/null; wait $run 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
	if $sluice status --data-dir "$data" >/dev/null 2>&1; then break; fi
	sleep 0.2
done

echo
echo "== sluice status --data-dir $data"
$sluice status --data-dir "$data"
echo
echo "== sluice history production --data-dir $data"
$sluice history production --data-dir "$data"
echo
echo "== what the production gateway now runs ($data/gateways/production/prod-eu-1.json)"
head -c 300 "$data/gateways/production/prod-eu-1.json"
echo " …"
