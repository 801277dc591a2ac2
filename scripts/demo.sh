#!/usr/bin/env bash
# Sluice's main job on the bundled example: validate the config repository,
# then render every gateway's desired state and show its version.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH=$HOME/.cargo/bin:$PATH
cargo build --locked --release --quiet --bin sluice
sluice=target/release/sluice
repo=examples/config-repo

echo "== sluice validate --repo $repo"
$sluice validate --repo "$repo"
echo
echo "== sluice render production --repo $repo"
$sluice render production --repo "$repo"
echo
echo "== sluice render -o table --repo $repo"
$sluice render -o table --repo "$repo"
