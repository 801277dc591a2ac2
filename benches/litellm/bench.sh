#!/usr/bin/env bash
# Sluice's litellm driver against its floor (issue 12), in one run:
#
#   floor:  restart the same N LiteLLM proxies to ready by hand, the way an
#           operator's script would (examples/litellm/restart.sh each: stop,
#           start, wait for /health/liveliness), with the same parallelism;
#   sluice: commit a policy change, then `sluice sync` until every proxy is
#           verified (config written, proxy restarted through the same hook,
#           the new stamp awaited, what it enforces read back).
#
# Paired rounds, alternating which goes first; prints each round, the
# median ratio sluice/floor and sluice's peak RSS. Usage:
#
#   bash benches/litellm/bench.sh [N=10] [ROUNDS=3] [PARALLEL=1]
#
# PARALLEL is --restarts-per-environment (all N gateways are in one
# environment) and how many the floor restarts at once.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
n=${1:-10}
rounds=${2:-3}
parallel=${3:-1}
bash scripts/install-deps.sh >/dev/null
export PATH=$HOME/.cargo/bin:$PATH
cargo build --locked --release --quiet --bin sluice
sluice=$root/target/release/sluice
export LITELLM_VENV
LITELLM_VENV=$(bash scripts/litellm-env.sh)
restart=$root/examples/litellm/restart.sh

work=$(mktemp -d /tmp/sluice-litellm-bench.XXXXXX)
data=$work/data
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pidfile in "$data"/litellm/*/litellm.pid; do
		[[ -f $pidfile ]] && kill -KILL -- "-$(cat "$pidfile")" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
echo_port=$(free_port)
"$LITELLM_VENV/bin/python" examples/litellm/echo_upstream.py "$echo_port" >/dev/null 2>&1 &
pids+=($!)

# One environment, N proxies, the example's packs.
repo=$work/repo
mkdir -p "$repo/environments/bench"
cp -r examples/litellm/repo/base examples/litellm/repo/sluice.yaml "$repo/"
sed -i 's/order: \[staging, production\]/order: [bench]/' "$repo/sluice.yaml"
printf 'slug: bench\nname: Bench\nenforcement: enforce\n' >"$repo/environments/bench/environment.yaml"
sed 's/STAGING_/BENCH_/g' examples/litellm/repo/environments/staging/litellm.yaml >"$repo/environments/bench/litellm.yaml"
hooks=()
ports=()
{
	echo "gateways:"
	for i in $(seq 1 "$n"); do
		port=$(free_port)
		ports+=("$port")
		printf '  - name: proxy-%s\n    driver: litellm\n    url: http://127.0.0.1:%s\n    path: litellm/proxy-%s/config.yaml\n    restartHook: proxy-%s\n    masterKeyEnv: BENCH_LITELLM_MASTER_KEY\n    readyTimeout: 300s\n' "$i" "$port" "$i" "$i"
		hooks+=(--restart-hook "bench/proxy-$i=$restart $data/litellm/proxy-$i $port")
	done
} >"$repo/environments/bench/gateways.yaml"
git -C "$repo" init -q -b main
git -C "$repo" add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.com commit -qm "bench"

export SLUICE_ALLOW_ENV='bench=BENCH_*' SLUICE_ALLOW_URL='*=http://127.0.0.1:*'
export BENCH_LITELLM_MASTER_KEY=sk-bench-master BENCH_OPENAI_API_KEY=sk-fake
export BENCH_OPENAI_API_BASE=http://127.0.0.1:$echo_port/v1

sync() {
	/usr/bin/time -f %M -o "$work/rss" "$sluice" sync --env bench --repo "$repo" --data-dir "$data" \
		--restarts-per-environment "$parallel" --concurrency "$n" "${hooks[@]}" >"$work/sync.out" 2>&1 ||
		{ cat "$work/sync.out" >&2; exit 1; }
}
floor() {
	# NB: waits for its own restarts only (the echo upstream runs on).
	local i=0 batch=()
	for port in "${ports[@]}"; do
		i=$((i + 1))
		bash "$restart" "$data/litellm/proxy-$i" "$port" >/dev/null &
		batch+=($!)
		if ((${#batch[@]} >= parallel)); then
			for pid in "${batch[@]}"; do wait "$pid"; done
			batch=()
		fi
	done
	for pid in "${batch[@]}"; do wait "$pid"; done
}
now() { date +%s.%N; }

echo "litellm bench: $n proxies in one environment, $parallel restart(s) at a time, $rounds paired rounds"
echo "first sync (starts every proxy)…"
sync
rpm=60
ratios=()
for round in $(seq 1 "$rounds"); do
	rpm=$((rpm + 1))
	sed -i "s/requests_per_minute: .*/requests_per_minute: $rpm/" "$repo/base/packs/models.yaml"
	git -C "$repo" -c user.name=bench -c user.email=bench@example.com commit -qam "rpm $rpm"
	measure_sluice() { local t0; t0=$(now); sync; sluice_s=$(awk -v a="$(now)" -v b="$t0" 'BEGIN {print a - b}'); }
	measure_floor() { local t0; t0=$(now); floor; floor_s=$(awk -v a="$(now)" -v b="$t0" 'BEGIN {print a - b}'); }
	if ((round % 2)); then measure_sluice; measure_floor; else measure_floor; measure_sluice; fi
	grep -q '"applied"\|applied' "$work/sync.out"
	ratio=$(awk -v a="$sluice_s" -v b="$floor_s" 'BEGIN {printf "%.3f", a / b}')
	ratios+=("$ratio")
	printf 'round %s: sluice %.1f s, floor %.1f s, ratio %s, sluice peak RSS %s KiB\n' \
		"$round" "$sluice_s" "$floor_s" "$ratio" "$(cat "$work/rss")"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median ratio sluice/floor: $median"
