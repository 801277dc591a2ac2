#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # `bash -c` bodies read their own $1; helpers run through check/refuse
# Checks the Helm chart (charts/sluice) without the helm CLI:
#
#   1. its crds/ are the generated ones (the same files as crds/);
#   2. it renders with Helm's own engine (scripts/helm-render.sh) for every
#      values file in charts/sluice/ci/, into any namespace (none hard-coded);
#   3. the rendered manifests and the CRDs pass kubernetes-validate --strict
#      (the Kubernetes 1.37 OpenAPI schemas);
#   4. with a test API server (KUBECONFIG, as scripts/k8s-test-env.sh run
#      sets it): the CRDs are created and Established, every rendered object
#      passes a server-side dry run and is then created for real, and the
#      ServiceAccount can do what the controller needs and nothing more
#      (kubectl auth can-i, impersonating it).
#
# Usage: scripts/chart-test.sh            (CI: inside scripts/k8s-test-env.sh run)
# Prints `chart: N passed, N failed`; exits 1 on any failure. Without Go (no
# renderer), kubernetes-validate or a server it says what it skipped, except
# under CI=true, where a missing piece fails.
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=charts/sluice
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/sluice
passed=0
failed=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log() { printf 'chart: %s\n' "$*" >&2; }
pass() { passed=$((passed + 1)); printf 'chart: ok    %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'chart: FAIL  %s\n' "$*"; }
check() { # DESCRIPTION CMD...: pass when CMD succeeds; its output on failure
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then pass "$what"; else fail "$what"; printf '%s\n' "$out" | tail -n 30 | sed 's/^/    /'; fi
}
refuse() { # DESCRIPTION CMD...: pass when CMD fails
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then fail "$what"; else pass "$what"; fi
}
missing() { # WHAT: skip, or fail under CI
	if [[ ${CI:-} == true ]]; then fail "$1 (required under CI=true)"; else log "skipped: $1"; fi
}
finish() {
	printf 'chart: %d passed, %d failed\n' "$passed" "$failed"
	((failed == 0))
	exit
}

# ------------------------------------------------------------- crds/ ----
check "charts/sluice/crds is identical to crds/ (regenerate: cargo run -- crds --out crds/ && cp crds/*.yaml $CHART/crds/)" \
	diff -r crds "$CHART/crds"

# ------------------------------------------------------------ render ----
status=0
bash scripts/helm-render.sh build || status=$?
if ((status == 3)); then
	missing "no chart renderer (needs Go): scripts/helm-render.sh build"
	finish
elif ((status != 0)); then
	fail "building the chart renderer"
	finish
fi

release=sluice-chart-$(printf '%05d' $((RANDOM % 100000)))$$
namespace=$release
declare -A rendered
for values in "$CHART"/ci/*-values.yaml; do
	name=$(basename "$values" -values.yaml)
	out=$work/$name.yaml
	check "renders with ci/$name-values.yaml" \
		bash scripts/helm-render.sh render "$CHART" --release "$release" --namespace "$namespace" \
		--values "$values" --include-crds
	bash scripts/helm-render.sh render "$CHART" --release "$release" --namespace "$namespace" \
		--values "$values" >"$out" 2>"$work/$name.notes" || continue
	rendered[$name]=$out
	# Every namespaced object lands in the release namespace or a gateway
	# namespace the values name; nothing else is hard-coded.
	check "ci/$name: no hard-coded namespace" \
		bash -c 'bad=$(grep -E "^  namespace: " "$1" | grep -vE "^  namespace: ($2|sluice-chart-gw-[ab])$" || true)
			[[ -z $bad ]] || { echo "$bad"; exit 1; }' _ "$out" "$namespace"
	check "ci/$name: NOTES.txt renders" grep -q "is installed as $release in namespace $namespace" "$work/$name.notes"
done
printf '{}\n' >"$work/bare-values.yaml"
check "the bare defaults (no API tokens, no api.allowOpen) are refused, saying what to set" \
	bash -c '! out=$(bash scripts/helm-render.sh render "$1" --values "$2" 2>&1) && grep -q "api.tokensSecretName" <<<"$out"' \
	_ "$CHART" "$work/bare-values.yaml"
if [[ -n ${rendered[full]:-} ]]; then
	check "ci/full: API tokens from the Secret (SLUICE_API_TOKENS), no --allow-open-api" \
		bash -c 'grep -q "name: SLUICE_API_TOKENS" "$1" && ! grep -q -- "--allow-open-api" "$1"' _ "${rendered[full]}"
	check "ci/full: ClusterRole, gateway namespace Roles and the ConfigRepository are rendered" \
		bash -c 'for k in "kind: ClusterRole" "namespace: sluice-chart-gw-b" "kind: ConfigRepository" "kind: Environment"; do
			grep -q "$k" "$1" || { echo "missing: $k"; exit 1; }; done' _ "${rendered[full]}"
	check "ci/full: leader election arguments" grep -q -- "--leader-elect" "${rendered[full]}"
	check "ci/full: the gateway namespaces' ConfigMaps are watched (--gateway-namespace each)" \
		bash -c 'for ns in sluice-chart-gw-a sluice-chart-gw-b; do
			grep -qx -- " *- --gateway-namespace=$ns" "$1" || { echo "missing: --gateway-namespace=$ns"; exit 1; }; done' _ "${rendered[full]}"
fi
if [[ -n ${rendered[default]:-} ]]; then
	refuse "ci/default: no --gateway-namespace (no gateway namespaces)" \
		grep -q -- "--gateway-namespace" "${rendered[default]}"
fi
if [[ -n ${rendered[minimal]:-} ]]; then
	check "ci/minimal: an open API on purpose (--allow-open-api)" grep -q -- "- --allow-open-api" "${rendered[minimal]}"
	refuse "ci/minimal: no ServiceAccount, metrics port or Lease rules" \
		grep -qE "^kind: ServiceAccount|name: metrics|leases" "${rendered[minimal]}"
fi

# ------------------------------------------------ kubernetes-validate ----
kv=$CACHE/py/kubernetes-validate-$(sha256sum <tests/helm-render/requirements.txt | cut -c1-12)/bin/kubernetes-validate
if [[ -x $kv ]]; then
	validate() { # FILE...: strict, and any warning other than "no schema for sluice.dev" fails
		local out
		out=$("$kv" --strict --quiet "$@" 2>&1) || { echo "$out"; return 1; }
		out=$(printf '%s\n' "$out" | grep -v "Couldn't find schema for kind [A-Za-z]* with api version sluice.dev/" | grep . || true)
		[[ -z $out ]] || { echo "$out"; return 1; }
	}
	for name in "${!rendered[@]}"; do
		check "ci/$name: kubernetes-validate --strict (Kubernetes 1.37 schemas)" validate "${rendered[$name]}"
	done
	for crd in crds/*.yaml; do
		check "$crd: kubernetes-validate --strict" validate "$crd"
	done
else
	missing "kubernetes-validate is not installed (scripts/install-deps.sh installs it into $CACHE/py)"
fi

# ------------------------------------------------ the test API server ----
if [[ -z ${KUBECONFIG:-} ]] || ! command -v kubectl >/dev/null 2>&1; then
	missing "no test API server: run inside scripts/k8s-test-env.sh run -- bash scripts/chart-test.sh"
	finish
fi
k() { kubectl --request-timeout=30s "$@"; }

check "the CRDs are created" k apply --server-side --field-manager=sluice-chart-test -f crds/
check "the CRDs are Established" k wait --for=condition=Established --timeout=60s \
	crd/configrepositories.sluice.dev crd/environments.sluice.dev crd/gateways.sluice.dev
for ns in "$namespace" sluice-chart-gw-a sluice-chart-gw-b; do
	k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
done

for name in default minimal full; do
	file=${rendered[$name]:-}
	[[ -n $file ]] || continue
	check "ci/$name: server-side dry run of every object" \
		k apply --server-side --dry-run=server --field-manager=sluice-chart-test -f "$file"
done
# Only one values set is created for real (they share object names).
file=${rendered[full]:-}
if [[ -n $file ]]; then
	check "ci/full: every object is created (RBAC, ServiceAccount, Deployment, Service, custom resources)" \
		k apply --server-side --field-manager=sluice-chart-test -f "$file"
	check "ci/full: the Environments from values are listed with their printer columns" \
		bash -c 'out=$(kubectl get environments -n "$1" -o wide) && echo "$out" &&
			head -1 <<<"$out" | grep -qE "^NAME +PATH +VERSION +GATEWAYS +READY +REASON +SUSPENDED +REPOSITORY +AGE" &&
			grep -qE "^production +environments/production " <<<"$out"' _ "$namespace"

	# Least privilege, asked as the ServiceAccount itself.
	sa=system:serviceaccount:$namespace:$release
	can() { k auth can-i --as="$sa" "$@"; }
	for rule in "list environments.sluice.dev" "watch configrepositories.sluice.dev" "get gateways.sluice.dev" \
		"patch environments.sluice.dev --subresource=status" "update configrepositories.sluice.dev --subresource=status" \
		"get secrets" "create events.events.k8s.io" "patch events.events.k8s.io"; do
		# shellcheck disable=SC2086 # the rule is words on purpose
		check "the ServiceAccount can: $rule (any namespace, clusterWide)" can $rule -n sluice-chart-gw-a
	done
	check "the ServiceAccount can: create leases in its namespace" can create leases.coordination.k8s.io -n "$namespace"
	check "the ServiceAccount can: update its own Lease" can update "leases.coordination.k8s.io/$release" -n "$namespace"
	check "the ServiceAccount can: update ConfigMaps in a gateway namespace" can update configmaps -n sluice-chart-gw-b
	for rule in "get deployments.apps" "watch deployments.apps" "patch deployments.apps"; do
		# shellcheck disable=SC2086
		check "the ServiceAccount can: $rule in a gateway namespace (rollouts)" can $rule -n sluice-chart-gw-a
	done
	for rule in "create deployments.apps" "update deployments.apps" "delete deployments.apps" "patch deployments.apps --subresource=status"; do
		# shellcheck disable=SC2086
		refuse "the ServiceAccount cannot: $rule in a gateway namespace" can $rule -n sluice-chart-gw-a
	done
	refuse "the ServiceAccount cannot: patch deployments.apps outside the gateway namespaces" \
		can patch deployments.apps -n "$namespace"
	for rule in "list secrets" "watch secrets" "update environments.sluice.dev" "delete environments.sluice.dev" \
		"create configrepositories.sluice.dev" "patch gateways.sluice.dev" "create pods" "list configmaps" \
		"update leases.coordination.k8s.io/someone-else" "create roles.rbac.authorization.k8s.io" "delete events.events.k8s.io"; do
		# shellcheck disable=SC2086
		refuse "the ServiceAccount cannot: $rule" can $rule -n "$namespace"
	done
	refuse "the ServiceAccount cannot: get leases in a gateway namespace" \
		can get "leases.coordination.k8s.io/$release" -n sluice-chart-gw-a
fi

# The default values: namespace-scoped RBAC, in a second release.
file=${rendered[default]:-}
if [[ -n $file ]]; then
	ns2=$namespace-default
	release2=$release-default
	k create namespace "$ns2" --dry-run=client -o yaml | k apply -f - >/dev/null
	bash scripts/helm-render.sh render "$CHART" --release "$release2" --namespace "$ns2" \
		--values "$CHART/ci/default-values.yaml" >"$work/default2.yaml" 2>/dev/null
	check "ci/default: every object is created" \
		k apply --server-side --field-manager=sluice-chart-test -f "$work/default2.yaml"
	sa=system:serviceaccount:$ns2:$release2
	check "ci/default: the ServiceAccount can get Secrets in its namespace" \
		k auth can-i --as="$sa" get secrets -n "$ns2"
	check "ci/default: the ServiceAccount can patch Environment status in its namespace" \
		k auth can-i --as="$sa" patch environments.sluice.dev --subresource=status -n "$ns2"
	refuse "ci/default: the ServiceAccount cannot get Secrets in another namespace" \
		k auth can-i --as="$sa" get secrets -n "$namespace"
	refuse "ci/default: the ServiceAccount cannot list Environments in another namespace" \
		k auth can-i --as="$sa" list environments.sluice.dev -n "$namespace"
	refuse "ci/default: the ServiceAccount cannot touch ConfigMaps (no gateway namespaces)" \
		k auth can-i --as="$sa" get configmaps -n "$ns2"
fi

finish
