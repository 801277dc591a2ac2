#!/usr/bin/env bash
# Builds Sluice's fuzz targets with libFuzzer on stable Rust: libfuzzer-sys
# (from crates.io) brings libFuzzer and its main; rustc-sancov.sh adds the
# coverage instrumentation cargo-fuzz would, without cargo-fuzz (whose
# sanitizer flags need nightly). The target directory sits outside the
# repository, so a fresh clone reuses what the last build compiled.
#
# Usage: fuzz/build.sh            prints the directory holding the binaries
set -euo pipefail
cd "$(dirname "$0")"
export PATH=$HOME/.cargo/bin:$PATH
host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${SLUICE_FUZZ_TARGET_DIR:-$HOME/.cache/sluice/fuzz-target}
export RUSTC_WRAPPER=$PWD/rustc-sancov.sh
SLUICE_FUZZ_BINS=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | tr '\n' ' ')
export SLUICE_FUZZ_BINS
# NB: an explicit --target keeps the flags off build scripts and proc macros.
cargo build --release --locked --target "$host" --bins >&2
echo "$CARGO_TARGET_DIR/$host/release"
