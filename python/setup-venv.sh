#!/usr/bin/env bash
# Creates (or refreshes) the virtualenv used by the Python fixture generators and cross-checks:
#   bash python/setup-venv.sh [DIR]     (default DIR: .venv)
# Packages come from the machine's local mirror only (no network index): wheel directories first, then the
# configured pip index if there is one.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-.venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
links=()
for d in /opt/wheels /opt/pypi/files /opt/pypi-more/files; do
  [[ -d "$d" ]] && links+=(--find-links "$d")
done
if (( ${#links[@]} > 0 )); then
  "$venv/bin/pip" install -q --disable-pip-version-check --no-index "${links[@]}" -r "$here/requirements.txt"
else
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
fi
"$venv/bin/python" -c "import torch, transformers, safetensors, gguf, numpy, tokenizers, matplotlib, nbclient, ipykernel; print('python venv ready:', torch.__version__, transformers.__version__)"
