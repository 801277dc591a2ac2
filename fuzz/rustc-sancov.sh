#!/usr/bin/env bash
# The rustc wrapper of fuzz/build.sh: libFuzzer's coverage instrumentation
# (what cargo-fuzz passes, all stable `-C` flags) for Sluice, the fuzz
# targets and the parsers they drive; every other crate is built plain, so
# the build stays short and the coverage is about the code under test.
rustc=$1
shift
crate=
prev=
for arg in "$@"; do
	[[ $prev == --crate-name ]] && crate=$arg
	prev=$arg
done
case " sluice sluice_fuzz serde_saphyr granit_parser $SLUICE_FUZZ_BINS " in
*" $crate "*)
	exec "$rustc" "$@" \
		-Cpasses=sancov-module \
		-Cllvm-args=-sanitizer-coverage-level=4 \
		-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
		-Cllvm-args=-sanitizer-coverage-pc-table \
		-Cllvm-args=-sanitizer-coverage-trace-compares \
		--cfg fuzzing
	;;
*) exec "$rustc" "$@" ;;
esac
