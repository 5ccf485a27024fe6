"""Security lint of the rendered manifests and the Dockerfile with checkov (deploy/checkov.yaml lists
the justified skips), and hadolint on the Dockerfile."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from deploy_helpers import DEPLOY, OVERLAYS, find


def run_checkov(checkov: Path, folder: Path) -> list[dict[str, Any]]:
    cmd = [str(checkov), "-d", str(folder), "--config-file", str(DEPLOY / "checkov.yaml"), "-o", "json"]
    env = os.environ | {"BC_SKIP_MAPPING": "TRUE"}  # offline: no guideline download
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.stdout, done.stderr
    report = json.loads(done.stdout)
    return report if isinstance(report, list) else [report]


def by_framework(reports: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["check_type"]: r for r in reports}


def test_rendered_overlays_pass_checkov(checkov, rendered, tmp_path):
    for name in OVERLAYS:
        (tmp_path / f"{name}.yaml").write_text(rendered[name])
    shutil.copy(DEPLOY / "Dockerfile", tmp_path / "Dockerfile")
    reports = by_framework(run_checkov(checkov, tmp_path))
    assert set(reports) == {"kubernetes", "dockerfile"}
    for report in reports.values():
        failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
        assert not failed, failed
        assert report["summary"]["parsing_errors"] == 0
    assert reports["kubernetes"]["summary"]["passed"] > 500


def test_checkov_catches_a_root_container_without_probes(checkov, resources, tmp_path):
    deployment = copy.deepcopy(find(resources["prod"], "Deployment", "streamrec-api")[0])
    pod = deployment["spec"]["template"]["spec"]
    pod["securityContext"] = {"runAsUser": 0}
    ctr = pod["containers"][0]
    for key in ("securityContext", "livenessProbe", "readinessProbe", "resources"):
        ctr.pop(key)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(deployment))
    report = by_framework(run_checkov(checkov, tmp_path))["kubernetes"]
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    # runAsNonRoot, liveness, readiness, CPU/memory requests and limits, no privilege escalation
    assert {"CKV_K8S_23", "CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_10", "CKV_K8S_11", "CKV_K8S_20"} <= failed


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).with_name("hadolint")
    cmd = [str(hadolint), str(DEPLOY / "Dockerfile")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
