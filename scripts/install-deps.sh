#!/usr/bin/env bash
# Installs what building and testing Sluice needs on a fresh Debian machine:
# a C toolchain and perl (vendored libgit2 and OpenSSL are compiled from
# source), git (the tests make real repositories and serve them), gpg and
# ssh-keygen (the tests sign commits with them), openssl and curl (the test
# Kubernetes environment), prlimit (the full-disk ledger tests), Debian's
# chromium and Node.js (the dashboard's browser tests), Rust itself when
# missing, two Python virtualenvs in the cache (kubernetes-validate, LiteLLM
# proxy) and playwright-core in the cache (driving that chromium; it never
# downloads a browser of its own).
# Idempotent: installs only what is not already there.
# `install-deps.sh browser` installs the system packages and playwright-core
# only, without the Python virtualenvs (what scripts/browser-test.sh needs).
# `install-deps.sh bench` installs everything, and check-jsonschema in the
# cache too (the peer `benches/validate/bench.sh` compares validation with).
set -euo pipefail
only=${1:-}
if [[ -n $only && $only != browser && $only != bench ]]; then
	echo "install-deps: unknown part '$only' (only 'browser' or 'bench')" >&2
	exit 2
fi

need=()
for tool in git cc make perl gpg gpg-agent gpgconf ssh-keygen openssl curl flock prlimit; do
	command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
# The browser tests drive Debian's chromium at exactly this path
# (tests/browser/harness.mjs), and run under Node.js with npm.
[[ -x /usr/bin/chromium ]] || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(node)
command -v npm >/dev/null 2>&1 || need+=(npm)
if ((${#need[@]})); then
	declare -A package=([git]=git [cc]=build-essential [make]=build-essential [perl]=perl
		[gpg]=gnupg [gpg-agent]=gnupg [gpgconf]=gnupg [ssh-keygen]=openssh-client
		[openssl]=openssl [curl]=curl [flock]=util-linux [prlimit]=util-linux
		[chromium]=chromium [node]=nodejs [npm]=npm)
	pkgs=()
	for tool in "${need[@]}"; do pkgs+=("${package[$tool]}"); done
	# build-essential once, however many of its tools were missing.
	mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
	echo "install-deps: installing ${pkgs[*]}" >&2
	sudo=""
	[[ $(id -u) -eq 0 ]] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1 && [[ -x $HOME/.cargo/bin/cargo ]]; then
	export PATH=$HOME/.cargo/bin:$PATH
fi
command -v cargo >/dev/null 2>&1 || {
	echo "install-deps: Rust (cargo) is required: https://rustup.rs" >&2
	exit 2
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# A virtualenv in the cache for NAME, keyed by its pinned requirements file,
# made once; CHECK (a command run with the venv's bin on PATH) proves it
# works before it is marked complete. Needs python3 with venv (Debian:
# python3-venv, installed when missing).
python_venv() {
	local name=$1 requirements=$2 check=$3
	local venv
	venv=${XDG_CACHE_HOME:-$HOME/.cache}/sluice/py/$name-$(sha256sum <"$requirements" | cut -c1-12)
	[[ -f $venv/.complete ]] && return 0
	local sudo=""
	[[ $(id -u) -eq 0 ]] || sudo="sudo"
	if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
		echo "install-deps: installing python3 and python3-venv" >&2
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 python3-venv >/dev/null
	fi
	echo "install-deps: installing $(grep -v '^#' "$requirements" | xargs) into $venv" >&2
	rm -rf "$venv"
	mkdir -p "$(dirname "$venv")"
	python3 -m venv "$venv"
	"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
	PATH=$venv/bin:$PATH bash -c "$check" >/dev/null
	touch "$venv/.complete"
}

if [[ $only != browser ]]; then
	# kubernetes-validate for the chart checks (scripts/chart-test.sh): about
	# 10 s and 150 MB.
	python_venv kubernetes-validate "$root/tests/helm-render/requirements.txt" \
		'kubernetes-validate --version'

	# LiteLLM proxy for the litellm format's tests (issue 12): about a minute
	# and 750 MB. scripts/litellm-env.sh prints its path, keyed the same way.
	python_venv litellm "$root/tests/litellm/requirements.txt" \
		"LITELLM_LOCAL_MODEL_COST_MAP=True python -c 'import litellm.proxy.proxy_server'"
fi
if [[ $only == bench ]]; then
	# check-jsonschema, the schema checker teams run in CI, for the
	# validation benchmark's paired run (issue 18): about 10 s and 30 MB.
	python_venv check-jsonschema "$root/benches/validate/requirements.txt" \
		'check-jsonschema --version'
fi

# playwright-core for the dashboard's browser tests (tests/browser/, run by
# scripts/browser-test.sh), pinned in tests/browser/playwright-core.version
# and installed once into the cache, keyed by that version: about 10 s and
# 10 MB. It drives /usr/bin/chromium (installed above); it never downloads a
# browser. scripts/browser-env.sh prints its node_modules path, keyed the
# same way; the check launches that chromium headless once.
node_package() {
	local name=$1 version=$2 check=$3
	local prefix
	prefix=${XDG_CACHE_HOME:-$HOME/.cache}/sluice/node/$name-$version
	[[ -f $prefix/.complete ]] && return 0
	local major
	major=$(node -p 'process.versions.node.split(".")[0]')
	if ((major < 20)); then
		echo "install-deps: $name $version needs Node.js 20 or newer, found $(node --version)" >&2
		exit 2
	fi
	echo "install-deps: installing $name@$version into $prefix" >&2
	rm -rf "$prefix"
	mkdir -p "$prefix"
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$prefix" --no-save --no-audit --no-fund \
		--loglevel=error "$name@$version" >/dev/null
	NODE_PATH=$prefix/node_modules PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 node -e "$check" >/dev/null
	touch "$prefix/.complete"
}

node_package playwright-core "$(tr -d '[:space:]' <"$root/tests/browser/playwright-core.version")" "
	const { chromium } = require('playwright-core');
	chromium.launch({ executablePath: '/usr/bin/chromium', headless: true })
		.then((browser) => browser.close())
		.catch((error) => { console.error(error.message); process.exit(1); });"
