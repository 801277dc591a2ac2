#!/usr/bin/env bash
# A short run of every fuzz target (fuzz/README.md): builds them (fuzz/build.sh),
# then runs each for SLUICE_FUZZ_SECONDS (30) from its committed corpus, two
# at a time. A crash, a leak-free panic, a timeout (10 s on one input) or
# running out of memory (2 GiB) fails the run; what crashed is kept under
# target/fuzz-artifacts/ and named in the output.
#
# Usage: scripts/fuzz-smoke.sh [TARGET…]     (default: every target)
#        SLUICE_FUZZ_SECONDS=600 SLUICE_FUZZ_MERGE=1 scripts/fuzz-smoke.sh
#            a campaign: 10 minutes each, new coverage merged into fuzz/corpus/
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SLUICE_FUZZ_SECONDS:-30}
bin=$(bash fuzz/build.sh)
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
	mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^sluice-fuzz$')
fi
artifacts=$PWD/target/fuzz-artifacts
mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() {
	local target=$1
	rm -rf "${artifacts:?}/$target"
	mkdir -p "$work/$target" "$artifacts/$target"
	# NB: new inputs go to the scratch directory, the committed corpus is
	# only read.
	"$bin/$target" "$work/$target" "fuzz/corpus/$target" \
		-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$artifacts/$target/" -print_final_stats=1 \
		>"$work/$target.log" 2>&1 || return
	# A campaign keeps what it found: the inputs that add coverage are
	# merged into the committed corpus.
	if [[ ${SLUICE_FUZZ_MERGE:-} == 1 ]]; then
		"$bin/$target" -merge=1 "fuzz/corpus/$target" "$work/$target" >>"$work/$target.merge.log" 2>&1
	fi
}

failed=0
pids=()
names=()
report() {
	local target=$1 status=$2
	local runs
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$target.log")
	if [[ $status -eq 0 ]]; then
		printf 'fuzz: %-13s ok, %s runs in %ss\n' "$target" "${runs:-?}" "$seconds"
	else
		failed=$((failed + 1))
		printf 'fuzz: %-13s FAILED (exit %s); the log ends:\n' "$target" "$status"
		tail -n 40 "$work/$target.log" | sed 's/^/    /'
		ls "$artifacts/$target" | sed "s|^|    artifact: $artifacts/$target/|"
	fi
}
for target in "${targets[@]}"; do
	run "$target" &
	pids+=($!)
	names+=("$target")
	if [[ ${#pids[@]} -eq 2 ]]; then
		status=0
		wait "${pids[0]}" || status=$?
		report "${names[0]}" "$status"
		pids=("${pids[1]}")
		names=("${names[1]}")
	fi
done
for i in "${!pids[@]}"; do
	status=0
	wait "${pids[$i]}" || status=$?
	report "${names[$i]}" "$status"
done
echo "fuzz: $((${#targets[@]} - failed)) passed, $failed failed"
[[ $failed -eq 0 ]]
