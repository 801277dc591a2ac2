#!/usr/bin/env bash
# A real Kubernetes API server (kube-apiserver + etcd) for Sluice's tests.
#
# Both servers, and kubectl, are built from Go modules (tests/k8s-apiserver)
# into a cache directory outside the repository; no container engine and no
# downloaded release binaries are needed, only Go and the Go module proxy.
#
# Usage:
#   scripts/k8s-test-env.sh build            build into the cache if missing or stale
#   scripts/k8s-test-env.sh start [--no-build]
#                                            start (or reuse) a detached environment;
#                                            prints `export ...` lines for eval
#   scripts/k8s-test-env.sh stop             stop the environment `start` started
#   scripts/k8s-test-env.sh status           say whether it runs; exit 0 if it does
#   scripts/k8s-test-env.sh env              print the `export ...` lines again
#   scripts/k8s-test-env.sh run [--no-build] -- CMD [ARG...]
#                                            build, start a private environment, run
#                                            CMD with KUBECONFIG and
#                                            SLUICE_TEST_KUBECONFIG set, stop on exit
#   scripts/k8s-test-env.sh kubectl ARG...   kubectl from the cache against `start`'s
#                                            environment
#
# Environment:
#   SLUICE_K8S_CACHE    cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/k8s)
#   SLUICE_K8S_STATE    state directory of the environment (default for start/stop:
#                       $SLUICE_K8S_CACHE/state; `run` uses a fresh temporary one)
#   SLUICE_K8S_READY_TIMEOUT  seconds to wait for readiness (default 180)
#   GOMODCACHE, GOCACHE, GOPROXY  honoured as usual by the Go build
#
# Exit status 3 means "cannot provide a server here" (no Go, or --no-build and
# nothing built yet); the Rust test helper treats it as a reason to skip.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
MOD_DIR=$REPO_ROOT/tests/k8s-apiserver

# Go's usual install location, for shells whose PATH lacks it.
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	PATH=/usr/local/go/bin:$PATH
fi

log() { printf 'k8s-test-env: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
unavailable() { log "unavailable: $*"; exit 3; }

# The versions come from go.mod, the single source of truth.
mod_version() {
	awk -v m="$1" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' "$MOD_DIR/go.mod"
}
K8S_VERSION=$(mod_version k8s.io/kubernetes)
ETCD_VERSION=$(mod_version go.etcd.io/etcd/server/v3)
[[ -n $K8S_VERSION && -n $ETCD_VERSION ]] || die "cannot read versions from $MOD_DIR/go.mod"

CACHE=${SLUICE_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/k8s}
BIN_DIR=$CACHE/kube-$K8S_VERSION-etcd-$ETCD_VERSION
DEFAULT_STATE=$CACHE/state
READY_TIMEOUT=${SLUICE_K8S_READY_TIMEOUT:-180}

# ---------------------------------------------------------------- build ----

# Everything that changes the binaries; a different hash means rebuild.
build_stamp() {
	{
		cat "$MOD_DIR/go.mod" "$MOD_DIR/go.sum" "$MOD_DIR/etcd/main.go"
		printf 'ldflags=%s\n' "$(ldflags)"
		go version 2>/dev/null || true
	} | sha256sum | cut -d' ' -f1
}

ldflags() {
	local major minor flags="-s -w" pkg
	major=${K8S_VERSION#v}
	minor=${major#*.}
	major=${major%%.*}
	minor=${minor%%.*}
	# Same variables as Kubernetes' hack/lib/version.sh sets. There is no git
	# checkout here, so gitCommit stays empty and the tree counts as clean
	# (it is the published module, verified by go.sum).
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit="
	done
	printf '%s' "$flags"
}

binaries_current() {
	local out
	[[ -x $BIN_DIR/kube-apiserver && -x $BIN_DIR/etcd && -x $BIN_DIR/kubectl ]] || return 1
	if command -v go >/dev/null 2>&1; then
		[[ -f $BIN_DIR/stamp && $(cat "$BIN_DIR/stamp") == "$(build_stamp)" ]] || return 1
	fi
	out=$("$BIN_DIR/kube-apiserver" --version 2>/dev/null) || return 1
	[[ $out == "Kubernetes $K8S_VERSION" ]] || return 1
	out=$("$BIN_DIR/etcd" --version 2>/dev/null) || return 1
	[[ $out == *"etcd Version: ${ETCD_VERSION#v}"* ]] || return 1
	out=$("$BIN_DIR/kubectl" version --client 2>/dev/null) || return 1
	[[ $out == *"Client Version: $K8S_VERSION"* ]] || return 1
}

cmd_build() {
	mkdir -p "$CACHE"
	exec 8>"$CACHE/.build.lock"
	flock 8
	if binaries_current; then
		log "up to date: $BIN_DIR (kube-apiserver $K8S_VERSION, etcd $ETCD_VERSION)"
		exec 8>&-
		return 0
	fi
	command -v go >/dev/null 2>&1 ||
		unavailable "Go is not installed, and $BIN_DIR holds no current build of kube-apiserver $K8S_VERSION / etcd $ETCD_VERSION"

	local tmp start secs
	tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
	chmod 755 "$tmp"
	log "building kube-apiserver, kubectl $K8S_VERSION and etcd $ETCD_VERSION into $BIN_DIR"
	log "(a cold build takes several minutes; later builds reuse Go's caches)"
	start=$SECONDS
	(
		cd "$MOD_DIR"
		export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"
		go build -trimpath -ldflags "$(ldflags)" -o "$tmp/" \
			k8s.io/kubernetes/cmd/kube-apiserver \
			k8s.io/kubernetes/cmd/kubectl \
			./etcd
	) || { rm -rf "$tmp"; die "go build failed"; }
	secs=$((SECONDS - start))
	build_stamp >"$tmp/stamp"
	{
		printf 'built=%s\nseconds=%s\ngo=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$secs" "$(go env GOVERSION)"
		(cd "$tmp" && ls -l kube-apiserver kubectl etcd)
	} >"$tmp/build-info"
	rm -rf "$BIN_DIR"
	mv "$tmp" "$BIN_DIR"
	binaries_current || die "built binaries in $BIN_DIR do not report the expected versions"
	log "built in ${secs}s: $(cd "$BIN_DIR" && du -h kube-apiserver kubectl etcd | tr '\t\n' ': ')"
	exec 8>&-
}

# ---------------------------------------------------------------- start ----

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

USED_PORTS=""
pick_port() { # VAR: set VAR to a free TCP port on 127.0.0.1
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 12000))
		if ! port_in_use "$p" && [[ " $USED_PORTS " != *" $p "* ]]; then
			USED_PORTS+=" $p"
			printf -v "$1" '%s' "$p"
			return 0
		fi
	done
	die "no free port found on 127.0.0.1"
}

pid_alive() {
	local file=$1 pid
	[[ -f $file ]] || return 1
	pid=$(cat "$file")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	# Guard against a recycled pid: it must still be one of our binaries.
	[[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$BIN_DIR"/* ]] ||
		grep -qs "$(basename "$file" .pid)" "/proc/$pid/cmdline"
}

api_get() { # PATH -> body; uses the state's CA and token
	curl -fsS --max-time 5 --cacert "$STATE/pki/ca.crt" \
		-H "Authorization: Bearer $(cat "$STATE/token")" \
		"https://127.0.0.1:$(cat "$STATE/apiserver.port")$1"
}

binary_replaced() { # PIDFILE: the process runs a binary since rebuilt
	[[ $(readlink "/proc/$(cat "$1")/exe" 2>/dev/null) == *" (deleted)" ]]
}

env_running() {
	pid_alive "$STATE/etcd.pid" && pid_alive "$STATE/kube-apiserver.pid" &&
		! binary_replaced "$STATE/kube-apiserver.pid" && ! binary_replaced "$STATE/etcd.pid" &&
		[[ -f $STATE/kubeconfig ]] && [[ $(api_get /readyz 2>/dev/null) == ok ]]
}

print_env() {
	printf 'export SLUICE_TEST_KUBECONFIG=%q\n' "$STATE/kubeconfig"
	printf 'export KUBECONFIG=%q\n' "$STATE/kubeconfig"
	printf 'export SLUICE_K8S_STATE=%q\n' "$STATE"
	printf 'export SLUICE_K8S_BIN=%q\n' "$BIN_DIR"
}

gen_pki() {
	command -v openssl >/dev/null 2>&1 || die "openssl is needed to generate keys (apt-get install openssl)"
	local pki=$STATE/pki
	mkdir -p "$pki"
	(
		cd "$pki"
		exec 2>openssl.log
		# Serving CA and certificate for 127.0.0.1.
		openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
			-keyout ca.key -out ca.crt -subj "/CN=sluice-test-ca" \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign"
		openssl req -newkey rsa:2048 -nodes -sha256 -keyout apiserver.key \
			-out apiserver.csr -subj "/CN=kube-apiserver"
		printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
			"basicConstraints=critical,CA:FALSE" \
			"keyUsage=critical,digitalSignature,keyEncipherment" \
			"extendedKeyUsage=serverAuth" >apiserver.ext
		openssl x509 -req -sha256 -days 3650 -in apiserver.csr -CA ca.crt -CAkey ca.key \
			-CAcreateserial -extfile apiserver.ext -out apiserver.crt
		# Service-account token signing key pair.
		openssl genrsa -out sa.key 2048
		openssl rsa -in sa.key -pubout -out sa.pub
	) || die "openssl failed; see $pki/openssl.log"
	chmod 600 "$pki"/*.key
}

write_kubeconfig() {
	local port=$1 token=$2 ca
	ca=$(base64 -w0 <"$STATE/pki/ca.crt")
	umask 077
	cat >"$STATE/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sluice-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $ca
users:
- name: sluice-test-admin
  user:
    token: $token
contexts:
- name: sluice-test
  context:
    cluster: sluice-test
    user: sluice-test-admin
    namespace: default
current-context: sluice-test
EOF
}

wait_for() { # DESCRIPTION PIDFILE LOG CMD...
	local what=$1 pidfile=$2 logfile=$3 deadline=$((SECONDS + READY_TIMEOUT))
	shift 3
	until "$@" >/dev/null 2>&1; do
		if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
			log "$what exited; last lines of $logfile:"
			tail -n 30 "$logfile" >&2 || true
			return 1
		fi
		if ((SECONDS >= deadline)); then
			log "$what not ready after ${READY_TIMEOUT}s; last lines of $logfile:"
			tail -n 30 "$logfile" >&2 || true
			return 1
		fi
		sleep 0.5
	done
}

etcd_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$1/health" | grep -q '"health":"true"'; }
apiserver_ready() { [[ $(api_get /readyz) == ok ]]; }

start_servers() {
	local etcd_port peer_port api_port token
	stop_servers quiet
	rm -rf "$STATE/etcd" "$STATE/pki" "$STATE/kubeconfig"
	mkdir -p "$STATE"
	gen_pki
	token=$(openssl rand -hex 32)
	printf '%s' "$token" >"$STATE/token"
	# user,uid,"groups": system:masters bypasses RBAC for the test admin;
	# everyone else (e.g. service accounts) is subject to RBAC.
	printf '%s,sluice-test-admin,sluice-test-admin,"system:masters"\n' "$token" >"$STATE/token.csv"
	chmod 600 "$STATE/token" "$STATE/token.csv"

	pick_port etcd_port
	pick_port peer_port
	pick_port api_port
	printf '%s' "$api_port" >"$STATE/apiserver.port"
	printf '%s' "$etcd_port" >"$STATE/etcd.port"

	log "starting etcd $ETCD_VERSION on 127.0.0.1:$etcd_port"
	setsid "$BIN_DIR/etcd" \
		--name sluice-test \
		--data-dir "$STATE/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" \
		--advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-cluster "sluice-test=http://127.0.0.1:$peer_port" \
		--unsafe-no-fsync \
		--log-level warn \
		</dev/null >"$STATE/etcd.log" 2>&1 8>&- 9>&- &
	echo $! >"$STATE/etcd.pid"
	wait_for etcd "$STATE/etcd.pid" "$STATE/etcd.log" etcd_healthy "$etcd_port" || return 1

	log "starting kube-apiserver $K8S_VERSION on https://127.0.0.1:$api_port"
	setsid "$BIN_DIR/kube-apiserver" \
		--advertise-address=127.0.0.1 \
		--endpoint-reconciler-type=none \
		--bind-address=127.0.0.1 \
		--secure-port="$api_port" \
		--etcd-servers="http://127.0.0.1:$etcd_port" \
		--cert-dir="$STATE/pki" \
		--tls-cert-file="$STATE/pki/apiserver.crt" \
		--tls-private-key-file="$STATE/pki/apiserver.key" \
		--token-auth-file="$STATE/token.csv" \
		--authorization-mode=RBAC \
		--service-account-issuer="https://127.0.0.1:$api_port" \
		--service-account-key-file="$STATE/pki/sa.pub" \
		--service-account-signing-key-file="$STATE/pki/sa.key" \
		--service-cluster-ip-range=10.0.0.0/24 \
		--disable-admission-plugins=ServiceAccount \
		--allow-privileged=true \
		--profiling=false \
		--v=1 \
		</dev/null >"$STATE/kube-apiserver.log" 2>&1 8>&- 9>&- &
	echo $! >"$STATE/kube-apiserver.pid"
	wait_for kube-apiserver "$STATE/kube-apiserver.pid" "$STATE/kube-apiserver.log" apiserver_ready || return 1

	write_kubeconfig "$api_port" "$token"
	log "ready: $(api_get /version | tr -d ' \n')"
	log "kubeconfig: $STATE/kubeconfig"
}

stop_one() { # NAME
	local pidfile=$STATE/$1.pid pid i
	if pid_alive "$pidfile"; then
		pid=$(cat "$pidfile")
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$pidfile"
}

stop_servers() {
	[[ -d $STATE ]] || return 0
	if [[ ${1:-} != quiet ]] && [[ -f $STATE/kube-apiserver.pid || -f $STATE/etcd.pid ]]; then
		log "stopping the environment in $STATE"
	fi
	stop_one kube-apiserver
	stop_one etcd
}

lock_state() {
	mkdir -p "$STATE"
	exec 9>"$STATE/.lock"
	flock 9
}

ensure_built() {
	if [[ ${NO_BUILD:-0} == 1 ]]; then
		binaries_current && return 0
		if command -v go >/dev/null 2>&1; then
			unavailable "kube-apiserver $K8S_VERSION / etcd $ETCD_VERSION not built yet in $BIN_DIR (run: scripts/k8s-test-env.sh build)"
		fi
		unavailable "Go is not installed and $BIN_DIR holds no current build of kube-apiserver $K8S_VERSION / etcd $ETCD_VERSION"
	else
		cmd_build
	fi
}

cmd_start() {
	STATE=${SLUICE_K8S_STATE:-$DEFAULT_STATE}
	ensure_built
	lock_state
	if env_running; then
		log "reusing the running environment in $STATE"
	else
		start_servers || { stop_servers quiet; die "could not start the environment (logs in $STATE)"; }
	fi
	print_env
}

cmd_stop() {
	STATE=${SLUICE_K8S_STATE:-$DEFAULT_STATE}
	lock_state
	stop_servers
}

cmd_status() {
	STATE=${SLUICE_K8S_STATE:-$DEFAULT_STATE}
	if [[ -d $STATE ]] && env_running; then
		log "running: $STATE ($(api_get /version | tr -d ' \n'))"
		return 0
	fi
	log "not running (state directory $STATE)"
	return 1
}

cmd_env() {
	STATE=${SLUICE_K8S_STATE:-$DEFAULT_STATE}
	env_running || die "not running; use: scripts/k8s-test-env.sh start"
	print_env
}

cmd_run() {
	local status=0
	[[ $# -gt 0 ]] || die "usage: scripts/k8s-test-env.sh run [--no-build] -- CMD [ARG...]"
	if [[ -n ${SLUICE_K8S_STATE:-} ]]; then
		STATE=$SLUICE_K8S_STATE
	else
		mkdir -p "$CACHE"
		STATE=$(mktemp -d "$CACHE/run.XXXXXX")
		OWN_STATE=1
	fi
	ensure_built
	lock_state
	# Stop on any exit, including Ctrl-C and TERM from a CI timeout.
	trap 'stop_servers; if [[ $OWN_STATE == 1 ]]; then rm -rf "$STATE"; fi' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	start_servers || die "could not start the environment (logs in $STATE)"
	export SLUICE_TEST_KUBECONFIG=$STATE/kubeconfig KUBECONFIG=$STATE/kubeconfig
	export SLUICE_K8S_STATE=$STATE SLUICE_K8S_BIN=$BIN_DIR
	PATH=$BIN_DIR:$PATH
	log "running: $*"
	# In the background with `wait`, so that INT/TERM are handled at once
	# (passed on to CMD, then the servers stopped) rather than after CMD ends.
	"$@" <&0 &
	CHILD=$!
	trap 'kill -INT "$CHILD" 2>/dev/null; exit 130' INT
	trap 'kill -TERM "$CHILD" 2>/dev/null; exit 143' TERM
	wait "$CHILD" || status=$?
	if ((status != 0)); then
		log "command failed with status $status; kube-apiserver log tail:"
		tail -n 20 "$STATE/kube-apiserver.log" >&2 || true
	fi
	return "$status"
}

cmd_kubectl() {
	STATE=${SLUICE_K8S_STATE:-$DEFAULT_STATE}
	[[ -f $STATE/kubeconfig ]] || die "not running; use: scripts/k8s-test-env.sh start"
	exec "$BIN_DIR/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"
}

OWN_STATE=0
CHILD=""
main() {
	local cmd=${1:-}
	[[ $# -gt 0 ]] && shift
	NO_BUILD=0
	if [[ ${1:-} == --no-build ]]; then
		NO_BUILD=1
		shift
	fi
	case $cmd in
	build) cmd_build ;;
	start) cmd_start ;;
	stop) cmd_stop ;;
	status) cmd_status ;;
	env) cmd_env ;;
	run)
		[[ ${1:-} == -- ]] && shift
		cmd_run "$@"
		;;
	kubectl) cmd_kubectl "$@" ;;
	-h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
	*) die "unknown command '${cmd}'; try: scripts/k8s-test-env.sh help" ;;
	esac
}

main "$@"
