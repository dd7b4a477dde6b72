"""The Kubernetes manifests under k8s/ are valid for the Kubernetes version we
target (kubernetes-validate, strict: unknown fields are errors). Custom
resources (CUSTOM_RESOURCE_GROUPS: kinds kubernetes-validate has no schema
for) are validated against their CRD's fields by tests/test_k8s_grid.py."""

import pathlib

import kubernetes_validate
import pytest
import yaml

K8S = pathlib.Path(__file__).resolve().parent.parent / "k8s"
BUILT_IN = [path for path in sorted(K8S.rglob("*.yaml"))]
# API groups of custom resources: KubeRay's RayCluster (tests/test_k8s_grid.py).
CUSTOM_RESOURCE_GROUPS = {"ray.io"}


def is_custom_resource(document: dict) -> bool:
    group, _, _version = document.get("apiVersion", "").rpartition("/")
    return group in CUSTOM_RESOURCE_GROUPS


def test_there_are_manifests():
    assert BUILT_IN, "no manifests found under k8s/"


@pytest.mark.parametrize("path", BUILT_IN, ids=lambda path: str(path.relative_to(K8S)))
def test_each_manifest_is_valid(path):
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert documents, f"{path} is empty"
    for document in documents:
        if is_custom_resource(document):
            continue
        kubernetes_validate.validate(document, "1.33", strict=True)


def test_the_grid_finds_jaeger_where_the_manifest_puts_it():
    documents = list(yaml.safe_load_all((K8S / "observability" / "jaeger.yaml").read_text()))
    service = next(d for d in documents if d["kind"] == "Service")
    config = next(d for d in documents if d["kind"] == "ConfigMap")
    ports = {port["name"]: port["port"] for port in service["spec"]["ports"]}
    assert config["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{service['metadata']['name']}:{ports['otlp-grpc']}"
    assert config["data"]["GRID_JAEGER_URL"] == f"http://{service['metadata']['name']}:{ports['ui']}"
