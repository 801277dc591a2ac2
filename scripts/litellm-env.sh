#!/usr/bin/env bash
# Prints the path of the LiteLLM proxy virtualenv that scripts/install-deps.sh
# makes (keyed by tests/litellm/requirements.txt), so tests and scripts can run
# "$(scripts/litellm-env.sh)/bin/litellm". Exits 1 (path still printed) when
# it is not installed yet.
set -euo pipefail
requirements=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/litellm/requirements.txt
venv=${XDG_CACHE_HOME:-$HOME/.cache}/sluice/py/litellm-$(sha256sum <"$requirements" | cut -c1-12)
echo "$venv"
[[ -f $venv/.complete ]]
