"""The Dockerfile runs the shared install script as a non-root user (the build itself is exercised by
`make deploy-check`; the lock it installs is tested in test_deploy_lock)."""

from __future__ import annotations

from deploy_helpers import DEPLOY


def test_dockerfile_is_multi_stage_non_root_and_uses_the_install_script():
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.count("\nFROM ") == 2 and "AS builder" in text and "AS runtime" in text
    runtime = text.split("AS runtime", 1)[1]
    assert "USER 10001" in runtime and "build-essential" not in runtime
    assert "RUN bash deploy/docker/install.sh /opt/venv /src" in text
    assert "download.pytorch.org/whl/cpu" in text
