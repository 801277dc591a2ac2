#!/usr/bin/env bash
# Eval suites at scale (issue 13): 1,000 eval cases against 10 gateways,
# wall time and peak RSS of `sluice eval`.
#
#   - N reference gateways (`sluice gateway --ephemeral`, echo upstream) on
#     loopback, each on a port of its own choosing;
#   - a copy of examples/config-repo whose staging lists them (driver: http)
#     and whose evals/ holds SUITES generated suites of CASES cases each, a
#     mix of what staging's chain produces: allowed, redacted, refused-model;
#   - `sluice sync` applies staging to them, then `sluice eval staging` is
#     timed ROUNDS times under /usr/bin/time -v; each round's JSON report
#     must show SUITES × CASES × N case runs, all passed.
#
# Prints each round, the median wall time and peak RSS, and the per-case
# latency that implies. Usage:
#
#   bash benches/eval/bench.sh [N=10] [SUITES=10] [CASES=100] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
n=${1:-10}
suites=${2:-10}
cases=${3:-100}
rounds=${4:-3}
export PATH=$HOME/.cargo/bin:$PATH
cargo build --locked --release --quiet --bin sluice
sluice=$root/target/release/sluice
# The peak RSS comes from GNU time's -v; bash's builtin has no such field.
if [[ ! -x /usr/bin/time ]]; then
	apt-get install -y -qq time >/dev/null
fi

work=$(mktemp -d /tmp/sluice-eval-bench.XXXXXX)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

# The gateways' bearer token: they require it, sync and eval send it (the
# repository names only the variable, which the operator allows below).
export GW_TOKEN=gw-bench-token
# Port 0: each gateway binds a free port and says which on stdout, so there
# is no window between picking a port and binding it.
ports=()
for i in $(seq 1 "$n"); do
	"$sluice" gateway --ephemeral --listen 127.0.0.1:0 --token-env GW_TOKEN \
		>"$work/gw-$i.out" 2>"$work/gw-$i.err" &
	pids+=($!)
done
for i in $(seq 1 "$n"); do
	port=
	for _ in $(seq 1 100); do
		port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/gw-$i.out" | head -n1)
		[[ -n $port ]] && break
		sleep 0.1
	done
	[[ -n $port ]] || { echo "gateway $i did not start:" >&2; cat "$work/gw-$i.err" >&2; exit 1; }
	ports+=("$port")
done

# The example repository, staging pointed at the gateways. Its own evals are
# replaced so the case count is exactly SUITES × CASES.
repo=$work/repo
cp -r examples/config-repo "$repo"
rm -f "$repo"/evals/*.eval.yaml
{
	echo "gateways:"
	for i in $(seq 1 "$n"); do
		printf '  - name: bench-%s\n    driver: http\n    url: http://127.0.0.1:%s\n    tokenEnv: GW_TOKEN\n    timeout: 10s\n' \
			"$i" "${ports[$((i - 1))]}"
	done
} >"$repo/environments/staging/gateways.yaml"
# Staging allows 600 requests/minute per pack per gateway; one gateway's
# suites are sent back to back, so lift the limit: the bench measures the
# eval runner, not the rate limiter.
mkdir -p "$repo/environments/staging/packs"
cat >"$repo/environments/staging/packs/models.yaml" <<'EOF'
# Bench only: no rate limit in the way of 1,000 back-to-back cases.
policy:
  rate-limit:
    requests_per_minute: 1000000
EOF
# Ten kinds of case, in turn: four plain requests (allowed), four carrying
# personal data staging's pii-detector redacts (email, card, IBAN), two
# naming a model outside staging's allowlist (refused-model).
case_yaml() {
	local s=$1 c=$2
	case $((c % 10)) in
	0 | 1 | 2 | 3)
		printf '  - name: plain question %s-%s\n    request: { model: gpt-4o-mini, messages: [{ role: user, content: "What is %s plus %s?" }] }\n    expect: { outcome: allowed, forwardedContains: ["%s plus %s"] }\n' \
			"$s" "$c" "$s" "$c" "$s" "$c" ;;
	4 | 5)
		printf '  - name: email %s-%s\n    request: { model: gpt-4o, messages: [{ role: user, content: "Write to user%s.%s@example.com about the refund" }] }\n    expect: { outcome: redacted, policies: [pii-detector], forwardedNotContains: ["user%s.%s@example.com"] }\n' \
			"$s" "$c" "$s" "$c" "$s" "$c" ;;
	6)
		printf '  - name: card %s-%s\n    request: { model: claude-sonnet-4, messages: [{ role: user, content: "My card 4111 1111 1111 1111 was charged twice (ticket %s-%s)" }] }\n    expect: { outcome: redacted, policies: [pii-detector], forwardedNotContains: ["4111 1111 1111 1111"] }\n' \
			"$s" "$c" "$s" "$c" ;;
	7)
		printf '  - name: iban %s-%s\n    request: { model: gpt-4o-mini, messages: [{ role: user, content: "Pay invoice %s-%s to GB82 WEST 1234 5698 7654 32" }] }\n    expect: { outcome: redacted, policies: [pii-detector], forwardedNotContains: ["GB82 WEST 1234 5698 7654 32"] }\n' \
			"$s" "$c" "$s" "$c" ;;
	8 | 9)
		printf '  - name: unapproved model %s-%s\n    request: { model: gpt-3.5-turbo, messages: [{ role: user, content: "hello %s-%s" }] }\n    expect: { outcome: refused-model, policies: [model-allowlist], status: 403 }\n' \
			"$s" "$c" "$s" "$c" ;;
	esac
}
for s in $(seq 1 "$suites"); do
	{
		printf 'suite: bench-%s\ndescription: Generated by benches/eval/bench.sh\ncases:\n' "$s"
		for c in $(seq 1 "$cases"); do case_yaml "$s" "$c"; done
	} >"$repo/evals/bench-$s.eval.yaml"
done
git -C "$repo" init -q -b main
git -C "$repo" add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.com commit -qm "bench"

# Operator allowances (comma-separated in the variables): staging may read
# GW_* and reach loopback; production's alert reads PROD_*.
export SLUICE_ALLOW_ENV='production=PROD_*,staging=GW_*' SLUICE_ALLOW_URL='*=http://127.0.0.1:*'
"$sluice" validate --repo "$repo" >"$work/validate.out" 2>&1 || { cat "$work/validate.out" >&2; exit 1; }
"$sluice" sync --repo "$repo" --data-dir "$work/data" --env staging >"$work/sync.out" 2>&1 ||
	{ cat "$work/sync.out" >&2; exit 1; }

expected=$((suites * cases * n))
echo "eval bench: $suites suites × $cases cases against $n gateways ($expected case runs), --concurrency $n, $rounds rounds"
walls=()
rss=()
for round in $(seq 1 "$rounds"); do
	rc=0
	/usr/bin/time -v -o "$work/time" "$sluice" eval staging --repo "$repo" --rev HEAD -o json \
		--concurrency "$n" >"$work/eval.json" 2>"$work/eval.err" || rc=$?
	((rc == 0)) || { echo "round $round: sluice eval exited $rc" >&2; cat "$work/eval.err" >&2; exit 1; }
	# The report, not the exit code alone: every case run made, every one passed.
	read -r runs passed failed gateways sent < <(jq -r \
		'[([.runs[].cases | length] | add), .totals.passed, .totals.failed,
		  ([.runs[].gateway] | unique | length), ([.runs[].cases[].sent] | add)] | @tsv' "$work/eval.json")
	if ((runs != expected || passed != expected || failed != 0 || gateways != n || sent != expected)); then
		echo "round $round: $runs case runs ($sent sent) on $gateways gateways, $passed passed, $failed failed; expected $expected" >&2
		jq -c '[.runs[].cases[] | select(.passed | not)] | .[:3]' "$work/eval.json" >&2
		exit 1
	fi
	# GNU time's wall clock is [h:]m:ss.ss.
	wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$work/time")
	kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time")
	walls+=("$wall")
	rss+=("$kib")
	printf 'round %s: %s case runs passed, wall %.2f s, peak RSS %s KiB (%.1f MiB)\n' \
		"$round" "$passed" "$wall" "$kib" "$(awk -v k="$kib" 'BEGIN {print k / 1024}')"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
mwall=$(median "${walls[@]}")
mrss=$(median "${rss[@]}")
# A gateway's cases run one after another, N gateways at once: each gateway
# saw SUITES × CASES cases in the wall time.
printf 'median: wall %.2f s, peak RSS %s KiB (%.1f MiB)\n' "$mwall" "$mrss" "$(awk -v k="$mrss" 'BEGIN {print k / 1024}')"
awk -v w="$mwall" -v r="$expected" -v c=$((suites * cases)) 'BEGIN {
	printf "implied: %.0f case runs/s overall; %.2f ms per case on each gateway (its %d cases in sequence)\n", r / w, w * 1000 / c, c }'
