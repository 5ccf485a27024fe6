"""Every overlay renders, validates against the Kubernetes schemas (kubernetes-validate, offline) and the
vendored CRD schemas (deploy/schemas, jsonschema), and matches the code's topic contract."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from deploy_helpers import DEPLOY, OVERLAYS, find

from core.topics import FEEDS, Topics

K8S_VERSION = "1.31"
IMAGES = {"dev": "localhost:5000/streamrec:", "prod": "registry.example.com/streamrec/streamrec:"}
CRD_SCHEMAS = {
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafkatopic",
    ("kafka.strimzi.io/v1beta2", "Kafka"): "kafka",
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): "kafkanodepool",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule",
}


def crd_validator(doc: dict[str, Any]) -> jsonschema.Draft202012Validator | None:
    key = (doc["apiVersion"], doc["kind"])
    if key not in CRD_SCHEMAS:
        return None
    schema = json.loads((DEPLOY / "schemas" / f"{CRD_SCHEMAS[key]}.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def validate(doc: dict[str, Any]) -> None:
    validator = crd_validator(doc)
    if validator is not None:
        validator.validate(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_process(resources, overlay):
    docs = resources[overlay]
    deployments = {d["metadata"]["name"] for d in find(docs, "Deployment")}
    assert deployments == {"streamrec-api", "streamrec-worker", "streamrec-publisher", "streamrec-eraser"}
    cronjobs = find(docs, "CronJob")
    names = {c["metadata"]["name"] for c in cronjobs}
    assert names == {"streamrec-trainer", "streamrec-indexer", "streamrec-drift"}
    assert {c["spec"]["concurrencyPolicy"] for c in cronjobs} == {"Forbid"}
    pods = [d["spec"]["template"]["spec"] for d in find(docs, "Deployment")]
    pods += [c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in cronjobs]
    images = {ctr["image"] for pod in pods for ctr in pod["containers"]}
    assert len(images) == 1 and images.pop().startswith(IMAGES[overlay])  # one image, set by the overlay
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        "streamrec-dev" if overlay == "dev" else "streamrec"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_validates(resources, overlay):
    errors = []
    for doc in resources[overlay]:
        try:
            validate(doc)
        except (jsonschema.ValidationError, kubernetes_validate.utils.SchemaNotFoundError) as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {getattr(exc, 'message', exc)}")
    assert not errors, "\n".join(errors)


def test_validators_reject_broken_resources(resources):
    deployment = copy.deepcopy(find(resources["prod"], "Deployment", "streamrec-api")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(jsonschema.ValidationError):
        validate(deployment)
    topic = copy.deepcopy(find(resources["prod"], "KafkaTopic")[0])
    del topic["spec"]["partitions"]
    with pytest.raises(jsonschema.ValidationError):
        validate(topic)
    scaled = copy.deepcopy(find(resources["prod"], "ScaledObject")[0])
    scaled["spec"]["triggers"] = []
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_topics_are_the_code_topics(resources, overlay):
    topics = find(resources[overlay], "KafkaTopic")
    assert sorted(t["spec"]["topicName"] for t in topics) == sorted(Topics("").all())
    for topic in topics:
        config = topic["spec"]["config"]
        assert "retention.ms" in config or config["cleanup.policy"] == "compact", topic["metadata"]["name"]
    feeds = next(t for t in topics if t["spec"]["topicName"] == FEEDS)
    assert feeds["spec"]["config"]["cleanup.policy"] == "compact"


def test_worker_autoscaling_is_keda_on_lag_in_prod(resources):
    prod, dev = resources["prod"], resources["dev"]
    scaled = find(prod, "ScaledObject")[0]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "streamrec-worker"
    assert scaled["spec"]["triggers"][0]["type"] == "kafka"
    interactions = next(t for t in find(prod, "KafkaTopic") if t["spec"]["topicName"] == "interactions")
    assert scaled["spec"]["maxReplicaCount"] == interactions["spec"]["partitions"]  # follows the topic
    settings = find(prod, "ConfigMap", "streamrec-settings")[0]["data"]
    assert int(settings["STREAMREC_KAFKA__PARTITIONS"]) == interactions["spec"]["partitions"]
    assert "replicas" not in find(prod, "Deployment", "streamrec-worker")[0]["spec"]
    assert not find(dev, "ScaledObject")
    hpas = find(prod, "HorizontalPodAutoscaler")
    assert [h["spec"]["scaleTargetRef"]["name"] for h in hpas] == ["streamrec-api"]


def test_dev_brings_its_datastores_and_prod_does_not(resources):
    dev_sets = {s["metadata"]["name"] for s in find(resources["dev"], "StatefulSet")}
    assert dev_sets == {"streamrec-redis", "streamrec-postgres"}
    assert find(resources["dev"], "Kafka") and find(resources["dev"], "KafkaNodePool")
    assert not find(resources["prod"], "StatefulSet") and not find(resources["prod"], "Kafka")


def test_grafana_dashboard_is_valid_json(resources):
    dashboard = find(resources["prod"], "ConfigMap", "streamrec-grafana-dashboard")[0]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard["data"]["streamrec-dashboard.json"])["panels"]
    assert panels and all(p["targets"][0]["expr"] for p in panels)


def test_keda_ceiling_follows_the_partitions_of_interactions(tmp_path):
    """Raise the topic's partitions and the rendered ScaledObject's maxReplicaCount follows."""
    import shutil

    import yaml
    from deploy_helpers import kustomize_build

    shutil.copytree(DEPLOY / "k8s", tmp_path / "k8s")
    topics = tmp_path / "k8s" / "base" / "topics.yaml"
    docs = list(yaml.safe_load_all(topics.read_text()))
    for d in docs:
        if d["spec"]["topicName"] == "interactions":
            d["spec"]["partitions"] = 24
    topics.write_text(yaml.safe_dump_all(docs))
    rendered = [d for d in yaml.safe_load_all(kustomize_build(tmp_path / "k8s" / "overlays" / "prod")) if d]
    assert find(rendered, "ScaledObject")[0]["spec"]["maxReplicaCount"] == 24
