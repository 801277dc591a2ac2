#!/usr/bin/env bash
# Restarts one LiteLLM proxy on this machine: a restart hook for Sluice's
# `litellm` gateways, in the place `systemctl restart litellm-NAME` takes on
# a server:
#
#   sluice run --restart-hook 'production/eu-1=examples/litellm/restart.sh /srv/litellm/eu-1 4001'
#
# Usage: restart.sh DIR PORT. Stops the proxy whose pid is in DIR/litellm.pid
# (its whole process group), starts `litellm --config DIR/config.yaml` on
# 127.0.0.1:PORT in the background, logging to
# DIR/litellm.log, and returns once it answers /health/liveliness (exit 0),
# or once it exits (exit 1, the end of its log on stderr: Sluice reports it
# as the gateway's error and puts the previous config back).
set -euo pipefail
dir=$1
port=$2
here=$(cd "$(dirname "$0")" && pwd)
venv=${LITELLM_VENV:-$(bash "$here/../../scripts/litellm-env.sh")}
config=$dir/config.yaml
# NB: the config is the operator's DIR, never the path Sluice reports
# (SLUICE_CONFIG comes from the repository's gateways.yaml): a gateway
# elsewhere that names this hook must not start this proxy on its config.
if [[ -n ${SLUICE_CONFIG:-} && $SLUICE_CONFIG != "$config" ]]; then
	echo "restart.sh: this hook restarts the proxy of $config, not $SLUICE_CONFIG" >&2
	exit 1
fi
# The audit callback Sluice writes beside the config appends here.
export SLUICE_AUDIT_LOG=${SLUICE_AUDIT_LOG:-$dir/audit.jsonl}
pidfile=$dir/litellm.pid
mkdir -p "$dir"
# One restart of this proxy at a time (Sluice healing while someone
# restarts it by hand): the second waits for the first.
exec 9>"$dir/restart.lock"
flock 9

# Is process $1 still running (not gone, not a zombie nobody reaps)?
running() {
	local state
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ $state != Z ]]
}

if [[ -f $pidfile ]]; then
	old=$(cat "$pidfile")
	kill -TERM -- "-$old" 2>/dev/null || kill -TERM "$old" 2>/dev/null || true
	for _ in $(seq 300); do
		running "$old" || break
		sleep 0.1
	done
	if running "$old"; then
		kill -KILL -- "-$old" 2>/dev/null || true
	fi
	rm -f "$pidfile"
fi

cd "$(dirname "$config")"
# setsid: its own process group, so the next restart stops all of it.
LITELLM_LOCAL_MODEL_COST_MAP=True PYTHONDONTWRITEBYTECODE=1 \
	setsid "$venv/bin/litellm" --config "$config" --host 127.0.0.1 --port "$port" \
	>"$dir/litellm.log" 2>&1 </dev/null 9>&- &
pid=$!
echo "$pid" >"$pidfile"
until curl -sf -o /dev/null "http://127.0.0.1:$port/health/liveliness"; do
	if ! running "$pid"; then
		echo "LiteLLM exited while starting; the end of its log:" >&2
		grep -v '^\s*$' "$dir/litellm.log" | tail -n 4 >&2
		exit 1
	fi
	sleep 0.2
done
