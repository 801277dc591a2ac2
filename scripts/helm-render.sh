#!/usr/bin/env bash
# Renders Sluice's Helm chart with Helm's own template engine, without the
# helm CLI: a tiny Go program (tests/helm-render, helm.sh/helm/v3's chart
# loader, values and engine packages) built from Go modules into a cache
# outside the repository.
#
# Usage:
#   scripts/helm-render.sh build             build into the cache if missing or stale
#   scripts/helm-render.sh render CHART [--release NAME] [--namespace NS]
#                                  [--values FILE]... [--set k=v]... [--include-crds]
#                                            print the rendered manifests (NOTES.txt to stderr)
#   scripts/helm-render.sh path              print the binary's path (after build)
#
# Environment:
#   SLUICE_HELM_CACHE   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/helm)
#   GOMODCACHE, GOCACHE, GOPROXY  honoured as usual by the Go build
#
# Exit status 3 means "cannot build here" (no Go and nothing built).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
MOD_DIR=$REPO_ROOT/tests/helm-render

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	PATH=/usr/local/go/bin:$PATH
fi

log() { printf 'helm-render: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

HELM_VERSION=$(awk '$1 == "require" && $2 == "helm.sh/helm/v3" { print $3; exit } $1 == "helm.sh/helm/v3" { print $2; exit }' "$MOD_DIR/go.mod")
[[ -n $HELM_VERSION ]] || die "cannot read the helm.sh/helm/v3 version from $MOD_DIR/go.mod"
CACHE=${SLUICE_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/helm}
BIN_DIR=$CACHE/$HELM_VERSION
BIN=$BIN_DIR/helm-render

build_stamp() {
	{
		cat "$MOD_DIR/go.mod" "$MOD_DIR/go.sum" "$MOD_DIR/main.go"
		go version 2>/dev/null || true
	} | sha256sum | cut -d' ' -f1
}

current() {
	[[ -x $BIN ]] || return 1
	if command -v go >/dev/null 2>&1; then
		[[ -f $BIN_DIR/stamp && $(cat "$BIN_DIR/stamp") == "$(build_stamp)" ]] || return 1
	fi
}

cmd_build() {
	mkdir -p "$CACHE"
	exec 8>"$CACHE/.build.lock"
	flock 8
	if current; then
		exec 8>&-
		return 0
	fi
	if ! command -v go >/dev/null 2>&1; then
		log "unavailable: Go is not installed and $BIN is not built"
		exit 3
	fi
	local tmp start
	tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
	log "building the chart renderer (helm.sh/helm/v3 $HELM_VERSION) into $BIN_DIR"
	start=$SECONDS
	(
		cd "$MOD_DIR"
		export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"
		go build -trimpath -ldflags "-s -w" -o "$tmp/helm-render" .
	) || { rm -rf "$tmp"; die "go build failed"; }
	build_stamp >"$tmp/stamp"
	printf 'built=%s\nseconds=%s\ngo=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$((SECONDS - start))" "$(go env GOVERSION)" >"$tmp/build-info"
	rm -rf "$BIN_DIR"
	mv "$tmp" "$BIN_DIR"
	log "built in $((SECONDS - start))s: $BIN"
	exec 8>&-
}

case ${1:-} in
build) cmd_build ;;
render)
	shift
	[[ $# -ge 1 ]] || die "usage: scripts/helm-render.sh render CHART [--set k=v]..."
	chart=$1
	shift
	cmd_build
	exec "$BIN" "$@" "$chart"
	;;
path)
	current || die "not built; run: scripts/helm-render.sh build"
	printf '%s\n' "$BIN"
	;;
-h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
*) die "unknown command '${1:-}'; try: scripts/helm-render.sh help" ;;
esac
