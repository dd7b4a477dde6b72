"""k8s/grid: the grid on KubeRay. Every built-in object is valid for Kubernetes
1.33 (kubernetes-validate, strict); the RayCluster is valid against the
KubeRay v1 fields it uses (tests/data/raycluster_v1_subset.schema.json) and its
pod templates are valid PodTemplateSpecs; and the pieces fit together: the
Service reaches the front door and nothing else, the probes ask the gRPC port,
every ConfigMap, Secret, key and volume named exists under k8s/, every file the
grid is told to read is mounted, the `grid serve` command line is one the grid
parses and accepts, traces flow front door -> collector -> Jaeger, and the
probe script really checks health over mutual TLS. Also: the NetworkPolicies,
evaluated over the manifests' pods, let in what the grid needs and nothing
more; every Ray container authenticates with the cluster's token from the
Secret; and the Dockerfile builds the image the pods name, on the Ray and
Python pyproject.toml pins, with everything the install needs in the build."""

import argparse
import base64
import dataclasses
import json
import pathlib
import posixpath
import re
import shlex
import subprocess
import sys
import tomllib
from concurrent import futures

import grpc
import jsonschema
import kubernetes_validate
import pytest
import trustme
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from grid import cli, security

ROOT = pathlib.Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
GRID = K8S / "grid"
SCHEMA = ROOT / "tests" / "data" / "raycluster_v1_subset.schema.json"
KUBERNETES_VERSION = "1.33"
CUSTOM_API_VERSIONS = {"ray.io/v1"}
RAY_START = re.compile(r'bash -c "\$KUBERAY_GEN_RAY_START_CMD"')


def load(path: pathlib.Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


GRID_DOCUMENTS = [(path, document) for path in sorted(GRID.glob("*.yaml")) for document in load(path)]
BUILT_IN = [(path, document) for path, document in GRID_DOCUMENTS
            if document.get("apiVersion") not in CUSTOM_API_VERSIONS]


def objects() -> dict[tuple[str, str], dict]:
    """Every object under k8s/, by (kind, name)."""
    found = {}
    for path in sorted(K8S.rglob("*.yaml")):
        for document in load(path):
            key = (document["kind"], document["metadata"]["name"])
            assert key not in found, f"{key} is defined twice under k8s/"
            found[key] = document
    return found


def the(kind: str, name: str | None = None) -> dict:
    matching = [document for (k, n), document in objects().items() if k == kind and name in (None, n)]
    assert len(matching) == 1, f"expected one {kind} {name or ''} under k8s/, found {len(matching)}"
    return matching[0]


def raycluster() -> dict:
    return the("RayCluster")


def groups(cluster: dict) -> list[tuple[str, str, dict]]:
    """(group name, node type, group spec); KubeRay labels the head's group 'headgroup'."""
    spec = cluster["spec"]
    return [("headgroup", "head", spec["headGroupSpec"])] + [
        (group["groupName"], "worker", group) for group in spec.get("workerGroupSpecs", [])]


def group(cluster: dict, name: str) -> dict:
    (spec,) = [spec for group_name, _, spec in groups(cluster) if group_name == name]
    return spec


def pod_labels(cluster: dict, group_name: str, node_type: str, spec: dict) -> dict:
    """The labels KubeRay's pods carry: the template's and KubeRay's own."""
    return {**spec["template"].get("metadata", {}).get("labels", {}), "ray.io/cluster": cluster["metadata"]["name"],
            "ray.io/group": group_name, "ray.io/node-type": node_type}


def ray_container(spec: dict) -> dict:
    return spec["template"]["spec"]["containers"][0]  # KubeRay: the Ray container is the first


def environment(container: dict) -> dict[str, str]:
    """The container's environment as far as the manifests decide it (Secret values are placeholders)."""
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(the("ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            env.update({key: "<secret>" for key in secret_keys(the("Secret", source["secretRef"]["name"]))})
    for variable in container.get("env", []):
        env[variable["name"]] = variable.get("value", "<secret>" if "secretKeyRef" in variable.get(
            "valueFrom", {}) else None)
        if "configMapKeyRef" in variable.get("valueFrom", {}):
            ref = variable["valueFrom"]["configMapKeyRef"]
            env[variable["name"]] = the("ConfigMap", ref["name"])["data"][ref["key"]]
    return env


def secret_keys(secret: dict) -> set[str]:
    return set(secret.get("data", {})) | set(secret.get("stringData", {}))


def serve_argv(container: dict) -> list[str]:
    """The `grid serve ...` of the container's shell script, its $VARIABLES
    expanded from the container's environment, as argv after `grid`."""
    assert container["command"][:2] == ["/bin/bash", "-c"], "the front door's command is a bash script"
    script = " ".join(container.get("args", [])).replace("\\\n", " ")
    (line,) = [line.strip() for line in script.splitlines() if re.match(r"\s*(exec\s+)?grid\s+serve\b", line)]
    env = environment(container)

    def expand(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        assert env.get(name) is not None, f"grid serve uses ${name}, which the container's environment lacks"
        return env[name]

    tokens = shlex.split(re.sub(r"\$\{(\w+)\}|\$(\w+)", expand, line))
    if tokens[0] == "exec":
        tokens = tokens[1:]
    assert tokens[:2] == ["grid", "serve"]
    return tokens[1:]


def flag(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, f"{name} should be given once in {argv}"
    return argv[argv.index(name) + 1]


def front_door() -> tuple[dict, dict]:
    cluster = raycluster()
    spec = group(cluster, "frontdoor")
    return spec, ray_container(spec)


def probes(container: dict) -> dict[str, dict]:
    return {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe") if kind in container}


def pod_specs() -> list[tuple[str, dict]]:
    """Every pod spec under k8s/grid: the RayCluster's groups and the Deployments'."""
    cluster = raycluster()
    specs = [(f"RayCluster {name}", spec["template"]["spec"]) for name, _, spec in groups(cluster)]
    specs += [(f"Deployment {doc['metadata']['name']}", doc["spec"]["template"]["spec"])
              for _, doc in GRID_DOCUMENTS if doc["kind"] == "Deployment"]
    return specs


def mounted_files(pod: dict, container: dict, into: pathlib.Path) -> dict[str, pathlib.Path]:
    """Lay the container's volumes out under `into` as the kubelet would (Secret and
    ConfigMap keys as files, items respected); mountPath -> directory."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    mounts = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        directory = into / mount["name"]
        directory.mkdir(parents=True, exist_ok=True)
        if "secret" in volume or "configMap" in volume:
            source = volume.get("secret") or volume["configMap"]
            if "secret" in volume:
                document = the("Secret", source["secretName"])
                files = {key: base64.b64decode(value, validate=True) for key, value in document.get("data", {}).items()}
                files.update({key: value.encode() for key, value in document.get("stringData", {}).items()})
            else:
                files = {key: value.encode() for key, value in the("ConfigMap", source["name"])["data"].items()}
            for item in source.get("items") or [{"key": key, "path": key} for key in files]:
                (directory / item["path"]).write_bytes(files[item["key"]])
        mounts[mount["mountPath"]] = directory
    return mounts


def local(path: str, mounts: dict[str, pathlib.Path]) -> pathlib.Path:
    """The file a container path is, under the laid-out volumes; fails when no volume holds it."""
    covering = [mount for mount in mounts if path == mount or path.startswith(mount.rstrip("/") + "/")]
    assert covering, f"{path} is on no mounted volume"
    mount = max(covering, key=len)
    return mounts[mount] / pathlib.PurePosixPath(path).relative_to(mount)


# ---------------------------------------------------------------- validity


def test_the_manifests_are_there():
    kinds = sorted(document["kind"] for _, document in GRID_DOCUMENTS)
    for kind in ("RayCluster", "Service", "ConfigMap", "Secret", "Deployment", "PersistentVolumeClaim"):
        assert kind in kinds, f"no {kind} under k8s/grid"


@pytest.mark.parametrize("path,document", BUILT_IN,
                         ids=[f"{path.name}:{doc['kind']}/{doc['metadata']['name']}" for path, doc in BUILT_IN])
def test_each_built_in_object_is_valid(path, document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_only_custom_resource_is_the_raycluster():
    custom = [(doc["apiVersion"], doc["kind"]) for _, doc in GRID_DOCUMENTS if doc["apiVersion"] in CUSTOM_API_VERSIONS]
    assert custom == [("ray.io/v1", "RayCluster")]


def test_the_raycluster_fits_the_kuberay_v1_fields():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(raycluster()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, error.path))}: {error.message}" for error in errors)


@pytest.mark.parametrize("group_name", ["headgroup", "shards", "frontdoor"])
def test_each_pod_template_is_a_valid_pod_template_spec(group_name):
    cluster = raycluster()
    kubernetes_validate.validate({
        "apiVersion": "v1", "kind": "PodTemplate",
        "metadata": {"name": f"{cluster['metadata']['name']}-{group_name}"},
        "template": group(cluster, group_name)["template"],
    }, KUBERNETES_VERSION, strict=True)


def test_worker_groups_are_consistent():
    cluster = raycluster()
    names = [name for name, _, _ in groups(cluster)]
    assert len(names) == len(set(names)), f"group names repeat: {names}"
    for name, node_type, spec in groups(cluster):
        if node_type == "worker":
            assert spec["minReplicas"] <= spec["replicas"] <= spec["maxReplicas"], name
    assert group(cluster, "frontdoor")["minReplicas"] >= 1, "no front door, no API"


def test_every_ray_container_starts_its_ray_node():
    """The overwrite annotation hands each container its own command: each must
    still run KubeRay's generated `ray start` (in a shell that keeps the quotes of
    --resources), or its pod never joins the cluster."""
    cluster = raycluster()
    assert cluster["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    for name, _, spec in groups(cluster):
        container = ray_container(spec)
        assert container["command"][:2] == ["/bin/bash", "-c"], name
        assert RAY_START.search(" ".join(container.get("args", []))), f"{name} does not run $KUBERAY_GEN_RAY_START_CMD"


def ray_resources(spec: dict) -> dict:
    """rayStartParams' resources as `ray start` gets it: KubeRay pastes the value
    into the command line, and the shell takes off one level of quotes."""
    value = spec["rayStartParams"].get("resources")
    if value is None:
        return {}
    (argument,) = shlex.split(value)
    return json.loads(argument)


def shard_groups(cluster: dict, resource: str) -> list[str]:
    return [name for name, _, spec in groups(cluster) if ray_resources(spec).get(resource, 0) > 0]


def test_shards_go_to_the_shard_pods_and_survive_losing_one():
    """grid serve --shard-resource R: every shard needs one unit of R. Only the
    shards group offers it, and with one of its pods lost the others still
    have a unit for every shard (Ray restarts the lost pod's shards there)."""
    cluster = raycluster()
    _, container = front_door()
    argv = serve_argv(container)
    resource = flag(argv, "--shard-resource")
    assert shard_groups(cluster, resource) == ["shards"], f"groups offering {resource}"
    shards = group(cluster, "shards")
    per_pod = ray_resources(shards)[resource]
    wanted = int(flag(argv, "--shards"))
    assert shards["minReplicas"] * per_pod >= wanted, f"fewer {resource} units than shards"
    assert (shards["minReplicas"] - 1) * per_pod >= wanted, f"a lost shard pod leaves shards without a {resource}"
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", "the head takes no work"


# ---------------------------------------------------------------- grid serve


def test_grid_serve_parses_the_front_doors_flags():
    _, container = front_door()
    argv = serve_argv(container)
    try:
        args = cli.build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"grid {' '.join(argv)}: grid's parser refuses it (see stderr)")
    assert args.command == "serve"
    assert args.handler is cli.cmd_serve
    # argparse also takes an unambiguous abbreviation; the manifest spells every flag out.
    (commands,) = [action for action in cli.build_parser()._actions
                   if isinstance(action, argparse._SubParsersAction)]
    known = set(commands.choices["serve"]._option_string_actions)
    unknown = [token for token in argv[1:] if token.startswith("-") and token not in known]
    assert not unknown, f"not flags of grid serve: {unknown}"


def test_the_grid_accepts_the_front_doors_configuration(tmp_path):
    """What `grid serve` does before it starts Ray: build the configuration
    (reading the auth file from the Secret) and check the listener: TLS with
    client certificates, credentials required, exposed beyond loopback."""
    spec, container = front_door()
    mounts = mounted_files(spec["template"]["spec"], container, tmp_path)
    argv = serve_argv(container)
    for path_flag in ("--tls-cert", "--tls-key", "--tls-client-ca", "--auth-file", "--data-dir"):
        index = argv.index(path_flag) + 1
        argv[index] = str(local(argv[index], mounts))
    args = cli.build_parser().parse_args(argv)
    config = cli._config(args)
    security.check_listener(config.host, config.tls, config.plaintext, config.plaintext_any_host,
                            config.auth.enabled, config.anonymous_any_host)
    assert config.tls is not None and config.tls.client_ca_path is not None, "mutual TLS"
    assert config.auth.enabled and not config.plaintext and not config.anonymous_any_host
    assert not security.is_loopback(config.host), "the Service cannot reach a loopback listener"
    assert config.ray_address is not None, "the front door joins the RayCluster instead of starting its own Ray"


def test_every_file_the_front_door_reads_is_mounted(tmp_path):
    """The grid's TLS and auth files, and the probe's script and certificates:
    each on a volume, each a key of the Secret or ConfigMap behind it."""
    spec, container = front_door()
    mounts = mounted_files(spec["template"]["spec"], container, tmp_path)
    argv = serve_argv(container)
    paths = [flag(argv, name) for name in ("--tls-cert", "--tls-key", "--tls-client-ca", "--auth-file")]
    for probe in probes(container).values():
        command = probe["exec"]["command"]
        paths.append(command[1])
        paths += [flag(command, name) for name in ("--ca", "--cert", "--key")]
    for path in paths:
        assert local(path, mounts).is_file(), f"{path}: mounted, but no such key in its Secret or ConfigMap"


def test_every_pod_that_opens_the_data_dir_mounts_the_same_volume_there():
    """A shard restarted on another shard pod reopens its store by path, and the
    front doors write grid.json, the admin log and the snapshots' directories
    there: the front doors and every group that may run a shard mount one
    ReadWriteMany claim where --data-dir points. The path is absolute: the
    shards' Ray names derive from it, and every front door must find them."""
    cluster = raycluster()
    _, container = front_door()
    argv = serve_argv(container)
    data_dir = flag(argv, "--data-dir")
    assert data_dir.startswith("/"), data_dir
    claims = set()
    for name in ["frontdoor", *shard_groups(cluster, flag(argv, "--shard-resource"))]:
        spec = group(cluster, name)
        pod = spec["template"]["spec"]
        claim_volumes = {volume["name"]: volume["persistentVolumeClaim"]["claimName"]
                         for volume in pod.get("volumes", []) if "persistentVolumeClaim" in volume}
        covering = [mount for mount in ray_container(spec).get("volumeMounts", [])
                    if mount["name"] in claim_volumes
                    and (data_dir + "/").startswith(mount["mountPath"].rstrip("/") + "/")]
        assert covering, f"{name}: {data_dir} is on no persistent volume"
        claims.add(claim_volumes[covering[0]["name"]])
    assert len(claims) == 1, f"the groups mount different claims: {claims}"
    claim = the("PersistentVolumeClaim", claims.pop())
    assert "ReadWriteMany" in claim["spec"]["accessModes"], "pods on several nodes mount it"


def test_the_front_door_joins_the_head_of_this_cluster():
    cluster = raycluster()
    _, container = front_door()
    head = ray_container(cluster["spec"]["headGroupSpec"])
    gcs = {port["name"]: port["containerPort"] for port in head.get("ports", [])}.get("gcs-server", 6379)
    assert flag(serve_argv(container), "--ray-address") == f"{cluster['metadata']['name']}-head-svc:{gcs}"


# ---------------------------------------------------------------- Service and probes


def test_the_service_selects_the_front_door_and_nothing_else():
    service = the("Service", "charging-grid")
    cluster = raycluster()
    selector = service["spec"]["selector"]
    assert selector, "a Service without a selector selects nothing"
    selected = [name for name, node_type, spec in groups(cluster)
                if selector.items() <= pod_labels(cluster, name, node_type, spec).items()]
    assert selected == ["frontdoor"]


def test_the_service_forwards_to_the_grids_grpc_port():
    service = the("Service", "charging-grid")
    _, container = front_door()
    port = int(flag(serve_argv(container), "--port"))
    (grpc_port,) = [p for p in service["spec"]["ports"] if p.get("appProtocol") == "grpc"]
    assert grpc_port["port"] == port
    target = grpc_port["targetPort"]
    named = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
    assert (named[target] if isinstance(target, str) else target) == port


def test_the_probes_ask_the_grpc_port():
    _, container = front_door()
    port = int(flag(serve_argv(container), "--port"))
    found = probes(container)
    assert {"readinessProbe", "livenessProbe"} <= set(found)
    for kind, probe in found.items():
        if "grpc" in probe:
            assert probe["grpc"]["port"] == port, kind
            continue
        command = probe["exec"]["command"]
        assert command[1].endswith("grpc_health_probe.py"), kind
        host, _, probed = flag(command, "--address").rpartition(":")
        assert int(probed) == port, f"{kind} asks port {probed}, the grid listens on {port}"
        assert security.is_loopback(host), kind


def test_the_probe_verifies_the_name_the_service_gives_the_grid():
    _, container = front_door()
    for kind, probe in probes(container).items():
        assert flag(probe["exec"]["command"], "--server-name") == the("Service", "charging-grid")["metadata"]["name"]


# ---------------------------------------------------------------- references


def test_every_configmap_secret_and_claim_named_exists():
    for where, pod in pod_specs():
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        for volume in volumes.values():
            if "secret" in volume:
                keys = secret_keys(the("Secret", volume["secret"]["secretName"]))
            elif "configMap" in volume:
                keys = set(the("ConfigMap", volume["configMap"]["name"])["data"])
            else:
                if "persistentVolumeClaim" in volume:
                    the("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
                continue
            for item in (volume.get("secret") or volume.get("configMap")).get("items", []):
                assert item["key"] in keys, f"{where}: volume {volume['name']}: no key {item['key']}"
        for container in pod.get("initContainers", []) + pod["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{where}: {container['name']} mounts unknown {mount['name']}"
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    the("ConfigMap", source["configMapRef"]["name"])
                if "secretRef" in source:
                    the("Secret", source["secretRef"]["name"])
            for variable in container.get("env", []):
                for kind, ref_name in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    ref = variable.get("valueFrom", {}).get(ref_name)
                    if ref:
                        document = the(kind, ref["name"])
                        keys = secret_keys(document) if kind == "Secret" else set(document["data"])
                        assert ref["key"] in keys, f"{where}: {variable['name']}: {kind} {ref['name']} has no {ref['key']}"


def test_the_secrets_are_well_formed_skeletons():
    for _, document in GRID_DOCUMENTS:
        if document["kind"] != "Secret":
            continue
        for key, value in document.get("data", {}).items():
            base64.b64decode(value, validate=True)
        if document.get("type") == "kubernetes.io/tls":
            assert {"tls.crt", "tls.key"} <= secret_keys(document), document["metadata"]["name"]
    # The auth file skeleton is one the grid loads.
    auth = the("Secret", "charging-grid-auth")["stringData"]["auth.yaml"]
    assert security.parse_auth(yaml.safe_load(auth)).enabled


# ---------------------------------------------------------------- traces


def collector_config() -> dict:
    return yaml.safe_load(the("ConfigMap", "otel-collector-config")["data"]["config.yaml"])


def service_ports(name: str) -> dict[str, int]:
    return {port["name"]: port["port"] for port in the("Service", name)["spec"]["ports"]}


def test_the_collector_exports_to_the_jaeger_service():
    config = collector_config()
    jaeger = the("Service", "jaeger")
    expected = f"{jaeger['metadata']['name']}:{service_ports('jaeger')['otlp-grpc']}"
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["exporters"]
    for exporter in pipeline["exporters"]:
        assert exporter in config["exporters"], f"the pipeline names undefined exporter {exporter}"
        assert exporter.split("/")[0] == "otlp", "OTLP over gRPC, what Jaeger's otlp-grpc port speaks"
        assert config["exporters"][exporter]["endpoint"] == expected
    for kind in ("receivers", "processors"):
        for name in pipeline[kind]:
            assert name in config[kind], f"the pipeline names undefined {kind[:-1]} {name}"
    for name in config["service"].get("extensions", []):
        assert name in config["extensions"]


def test_the_collector_listens_where_its_service_and_probes_point():
    config = collector_config()
    deployment = the("Deployment", "otel-collector")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container_ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    service = the("Service", "otel-collector")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in container_ports, port["name"]
    host, _, port = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rpartition(":")
    assert host == "0.0.0.0", "a receiver on localhost is out of the Service's reach"
    assert int(port) == container_ports["otlp-grpc"]
    host, _, port = config["extensions"]["health_check"]["endpoint"].rpartition(":")
    assert host == "0.0.0.0" and int(port) == container_ports[container["readinessProbe"]["httpGet"]["port"]]
    (mount,) = container["volumeMounts"]
    assert f"--config={mount['mountPath']}/config.yaml" in container["args"]


def test_the_front_door_sends_traces_to_the_collector():
    _, container = front_door()
    env = environment(container)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://otel-collector:{service_ports('otel-collector')['otlp-grpc']}"
    assert env["GRID_JAEGER_URL"] == f"http://jaeger:{service_ports('jaeger')['ui']}"


# ---------------------------------------------------------------- the probe, for real


class HealthServer:
    """A gRPC server with the grid's TLS setup (server.py: client certificates
    required, signed by the client CA) and the standard health service."""

    def __init__(self, server_cert: trustme.LeafCert, client_ca: trustme.CA):
        self.health = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        key = server_cert.private_key_pem.bytes()
        chain = b"".join(blob.bytes() for blob in server_cert.cert_chain_pems)
        self.port = self.server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
            [(key, chain)], root_certificates=client_ca.cert_pem.bytes(), require_client_auth=True))
        self.server.start()

    def stop(self):
        self.server.stop(grace=None)


def run_probe(command: list[str], mounts: dict[str, pathlib.Path], port: int, **replace: str) -> int:
    argv = list(command[2:])
    for path_flag in ("--ca", "--cert", "--key"):
        if path_flag in argv:
            index = argv.index(path_flag) + 1
            argv[index] = str(local(argv[index], mounts))
    argv[argv.index("--address") + 1] = f"127.0.0.1:{port}"
    for name, value in replace.items():
        argv[argv.index(name) + 1] = value
    script = local(command[1], mounts)
    return subprocess.run([sys.executable, str(script), *argv], capture_output=True, timeout=60).returncode


def test_the_probe_checks_health_over_mutual_tls(tmp_path):
    """The probe command of the manifest, with real certificates where the
    Secrets' files are: SERVING passes, NOT_SERVING fails, and a probe whose
    certificate the client CA did not sign is refused at the handshake."""
    server_ca, client_ca, stranger_ca = trustme.CA(), trustme.CA(), trustme.CA()
    spec, container = front_door()
    mounts = mounted_files(spec["template"]["spec"], container, tmp_path / "volumes")
    command = container["readinessProbe"]["exec"]["command"]
    server_name = flag(command, "--server-name")
    server_ca.cert_pem.write_to_path(str(local(flag(command, "--ca"), mounts)))
    probe_cert = client_ca.issue_cert("kubelet-probe")
    probe_cert.cert_chain_pems[0].write_to_path(str(local(flag(command, "--cert"), mounts)))
    probe_cert.private_key_pem.write_to_path(str(local(flag(command, "--key"), mounts)))
    stranger = stranger_ca.issue_cert("kubelet-probe")
    stranger_cert, stranger_key = tmp_path / "stranger.crt", tmp_path / "stranger.key"
    stranger.cert_chain_pems[0].write_to_path(str(stranger_cert))
    stranger.private_key_pem.write_to_path(str(stranger_key))

    server = HealthServer(server_ca.issue_cert(server_name), client_ca)
    try:
        assert run_probe(command, mounts, server.port) == 0
        server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert run_probe(command, mounts, server.port) == 1
        server.health.set("", health_pb2.HealthCheckResponse.SERVING)
        assert run_probe(command, mounts, server.port, **{"--cert": str(stranger_cert),
                                                          "--key": str(stranger_key)}) == 1
        assert run_probe(command, mounts, server.port, **{"--server-name": "not-the-grid"}) == 1
        assert run_probe(command, mounts, server.port) == 0
    finally:
        server.stop()


# ---------------------------------------------------------------- Ray token authentication


def test_every_ray_container_authenticates_with_the_clusters_token():
    """RAY_AUTH_MODE=token and RAY_AUTH_TOKEN on the head, the shards and the
    front doors (its `grid serve` is a driver): a node or driver without the
    token, or with another, cannot join. The token comes from one Secret key,
    never from the manifest, and each variable is set once (a later duplicate
    would win)."""
    cluster = raycluster()
    sources = set()
    for name, _, spec in groups(cluster):
        variables = ray_container(spec).get("env", [])
        names = [variable["name"] for variable in variables]
        for required in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
            assert names.count(required) == 1, f"{name}: {required} set {names.count(required)} times"
        env = {variable["name"]: variable for variable in variables}
        assert env["RAY_AUTH_MODE"].get("value") == "token", name
        token = env["RAY_AUTH_TOKEN"]
        assert "value" not in token, f"{name}: the token is in the manifest"
        ref = token.get("valueFrom", {}).get("secretKeyRef")
        assert ref, f"{name}: RAY_AUTH_TOKEN is not from a Secret"
        assert not ref.get("optional", False), f"{name}: a missing token must keep the pod from starting"
        sources.add((ref["name"], ref["key"]))
    assert sources == {("charging-grid-auth", "ray-auth-token")}, "every node needs the same token"
    assert "ray-auth-token" in secret_keys(the("Secret", "charging-grid-auth"))


def test_the_readme_creates_every_key_of_the_auth_secret():
    """k8s/README.md's `kubectl create secret generic charging-grid-auth` makes
    the keys the skeleton has (and the pods read), the Ray token among them."""
    text = (K8S / "README.md").read_text().replace("\\\n", " ")
    (command,) = [line for line in text.splitlines()
                  if line.strip().startswith("kubectl create secret generic charging-grid-auth")]
    keys = set()
    for token in shlex.split(command, comments=True):
        for option in ("--from-file=", "--from-literal="):
            if token.startswith(option):
                keys.add(token[len(option):].partition("=")[0])
    assert keys == secret_keys(the("Secret", "charging-grid-auth"))


# ---------------------------------------------------------------- NetworkPolicies
#
# A small evaluator of networking.k8s.io/v1 NetworkPolicy ingress, for the
# features the manifests use (it fails on any other rather than guess): pod
# and namespace selectors (matchLabels, matchExpressions), peers by
# podSelector and/or namespaceSelector, rules without peers or without ports,
# ports by number (endPort) or by the destination pod's container port name.
# The manifests name no namespace: they are applied into one, NAMESPACE.

NAMESPACE = "grid"


@dataclasses.dataclass(frozen=True)
class Pod:
    what: str
    labels: dict[str, str]
    ports: dict[str, int]  # named container ports, any container of the pod
    namespace: str = NAMESPACE


def network_policies() -> list[dict]:
    return [document for (kind, _), document in objects().items() if kind == "NetworkPolicy"]


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A LabelSelector; {} selects everything."""
    assert set(selector) <= {"matchLabels", "matchExpressions"}, f"not modelled: {selector}"
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {"In": lambda: labels.get(key) in values,
                   "NotIn": lambda: key not in labels or labels[key] not in values,
                   "Exists": lambda: key in labels,
                   "DoesNotExist": lambda: key not in labels}[operator]()
        if not matched:
            return False
    return True


def peer_admits(peer: dict, policy_namespace: str, source: Pod) -> bool:
    assert set(peer) <= {"podSelector", "namespaceSelector"}, f"not modelled (ipBlock?): {peer}"
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": source.namespace}):
            return False
    elif source.namespace != policy_namespace:
        return False  # a podSelector alone: pods of the policy's namespace
    return "podSelector" not in peer or selects(peer["podSelector"], source.labels)


def port_admits(ports: list[dict] | None, destination: Pod, port: int, protocol: str = "TCP") -> bool:
    if not ports:
        return True
    for entry in ports:
        assert set(entry) <= {"protocol", "port", "endPort"}, entry
        if entry.get("protocol", "TCP") != protocol:
            continue
        value = entry.get("port")
        if value is None:
            return True
        if isinstance(value, str):
            assert "endPort" not in entry, "endPort needs a numbered port"
            if destination.ports.get(value) == port:  # a name means the destination's container port
                return True
        elif value <= port <= entry.get("endPort", value):
            return True
    return False


def admits(policies: list[dict], source: Pod, destination: Pod, port: int) -> bool:
    """Whether the policies let source open a TCP connection to destination:port."""
    isolating = [policy for policy in policies
                 if policy["metadata"].get("namespace", NAMESPACE) == destination.namespace
                 and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
                 and selects(policy["spec"]["podSelector"], destination.labels)]
    if not isolating:
        return True  # no policy selects the pod: it accepts everything
    for policy in isolating:
        namespace = policy["metadata"].get("namespace", NAMESPACE)
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            if (not peers or any(peer_admits(peer, namespace, source) for peer in peers)) \
                    and port_admits(rule.get("ports"), destination, port):
                return True
    return False


def named_ports(pod: dict) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for container in pod.get("initContainers", []) + pod["containers"]
            for port in container.get("ports", []) if "name" in port}


def ray_pod(group_name: str) -> Pod:
    cluster = raycluster()
    (pod,) = [Pod(f"RayCluster {name}", pod_labels(cluster, name, node_type, spec),
                  named_ports(spec["template"]["spec"]))
              for name, node_type, spec in groups(cluster) if name == group_name]
    return pod


def deployment_pod(name: str) -> Pod:
    template = the("Deployment", name)["spec"]["template"]
    return Pod(f"Deployment {name}", template["metadata"]["labels"], named_ports(template["spec"]))


def manifest_pods() -> list[Pod]:
    return [ray_pod(name) for name, _, _ in groups(raycluster())] + [
        deployment_pod(name) for (kind, name) in objects() if kind == "Deployment"]


def service_backend(address: str) -> tuple[Pod, int]:
    """HOST:PORT of a Service of the manifests -> the one kind of pod it
    selects and the container port the connection arrives at."""
    host, _, number = address.removeprefix("http://").rpartition(":")
    service = the("Service", host)
    (entry,) = [port for port in service["spec"]["ports"] if port["port"] == int(number)]
    (pod,) = [pod for pod in manifest_pods() if service["spec"]["selector"].items() <= pod.labels.items()]
    target = entry.get("targetPort", entry["port"])
    return pod, (pod.ports[target] if isinstance(target, str) else target)


ALL_PORTS = range(1, 65536)


def test_every_network_policy_selects_pods_of_the_manifests():
    """A selector with a typo isolates nothing and says nothing: each policy
    must select at least one pod the manifests run."""
    policies = network_policies()
    assert {policy["metadata"]["name"] for policy in policies} >= {
        "charging-grid-ray", "charging-grid-frontdoor", "otel-collector"}
    pods = manifest_pods()
    for policy in policies:
        selected = [pod.what for pod in pods if selects(policy["spec"]["podSelector"], pod.labels)]
        assert selected, f"NetworkPolicy {policy['metadata']['name']} selects no pod of k8s/"


def test_outsiders_reach_the_front_doors_grpc_port_and_nothing_else_of_the_grid():
    """Any pod, in the grid's namespace or another, reaches the front door's gRPC
    port (what the Service charging-grid forwards to) and in-cluster pods its
    metrics; none reaches any other port of the front door, the Ray head (GCS,
    Ray client), a shard pod, or the collector's OTLP port."""
    policies = network_policies()
    head, shards, front = ray_pod("headgroup"), ray_pod("shards"), ray_pod("frontdoor")
    collector, collector_port = service_backend(environment(front_door()[1])["OTEL_EXPORTER_OTLP_ENDPOINT"])
    grpc_pod, grpc_port = service_backend(f"charging-grid:{flag(serve_argv(front_door()[1]), '--port')}")
    assert grpc_pod == front
    assert head.ports["gcs-server"] == 6379 and collector_port == 4317
    outsiders = [Pod("another app's pod", {"app": "other"}, {}),
                 Pod("a pod of another namespace", {"app": "other"}, {}, namespace="elsewhere")]
    for outsider in outsiders:
        assert admits(policies, outsider, front, grpc_port), outsider.what
        assert admits(policies, outsider, front, front.ports["metrics"]), outsider.what
        open_ports = {port for port in ALL_PORTS if admits(policies, outsider, front, port)}
        assert open_ports == {grpc_port, front.ports["metrics"]}, f"{outsider.what}: front door ports {open_ports}"
        assert not admits(policies, outsider, head, head.ports["gcs-server"]), outsider.what
        for destination in (head, shards):
            reachable = [port for port in ALL_PORTS if admits(policies, outsider, destination, port)]
            assert not reachable, f"{outsider.what} reaches {destination.what} on {reachable[:10]}"
        assert not admits(policies, outsider, collector, collector_port), outsider.what
    # Grid-looking labels alone let nothing in: Jaeger carries part-of: charging-grid.
    jaeger = deployment_pod("jaeger")
    assert jaeger.labels.get("app.kubernetes.io/part-of") == "charging-grid"
    assert not admits(policies, jaeger, collector, collector_port)
    assert not admits(policies, jaeger, head, head.ports["gcs-server"])


def test_the_grid_reaches_what_it_needs():
    """The Ray nodes reach each other on every port (the GCS, and the random
    ports of raylets and workers); the front doors and the shard actors reach
    the collector's OTLP gRPC port (and no other of its ports); the collector
    reaches Jaeger's, where its exporter points."""
    policies = network_policies()
    cluster = raycluster()
    head, shards, front = ray_pod("headgroup"), ray_pod("shards"), ray_pod("frontdoor")
    ray_pods = [ray_pod(name) for name, _, _ in groups(cluster)]
    host, _, gcs = flag(serve_argv(front_door()[1]), "--ray-address").rpartition(":")
    assert host == f"{cluster['metadata']['name']}-head-svc"
    for source in ray_pods:
        assert admits(policies, source, head, int(gcs)), f"{source.what} cannot reach the GCS"
        for destination in ray_pods:
            for port in (6379, 8076, 10001, 10002, 19999, 52365, 50051, 9464):
                assert admits(policies, source, destination, port), f"{source.what} -> {destination.what}:{port}"
    collector, collector_port = service_backend(environment(front_door()[1])["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert collector == deployment_pod("otel-collector")
    for source in (front, shards):
        assert admits(policies, source, collector, collector_port), f"{source.what} cannot export spans"
        # ... and nothing else of it: OTLP/HTTP is unused, the health port is the kubelet's.
        open_ports = {port for port in ALL_PORTS if admits(policies, source, collector, port)}
        assert open_ports == {collector_port}, f"{source.what} reaches the collector on {sorted(open_ports)[:10]}"
    exporters = collector_config()["exporters"]
    for exporter in collector_config()["service"]["pipelines"]["traces"]["exporters"]:
        backend, port = service_backend(exporters[exporter]["endpoint"])
        assert backend == deployment_pod("jaeger")
        assert admits(policies, collector, backend, port), f"the collector cannot reach {backend.what}:{port}"


# ---------------------------------------------------------------- the image

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or (not pending and not line.strip()):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation"
    return instructions


def dockerignore() -> list[tuple[bool, re.Pattern]]:
    """(excludes, regex) per line, as Docker reads .dockerignore: paths from the
    context's root, `*` and `?` within a path segment, `**` across segments,
    `!` for an exception; the last matching line decides."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        pattern = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
        assert "[" not in pattern and "\\" not in pattern, f"not modelled: {line}"
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            else:
                regex += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
                i += 1
        rules.append((excludes, re.compile(regex)))
    return rules


def dockerignored(path: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether the build context leaves out path (relative to the root): a
    line matching the path or a directory above it."""
    parts = pathlib.PurePosixPath(path).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for excludes, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = excludes
    return ignored


def pip_installs(arguments: str) -> list[list[str]]:
    """The arguments of each `pip install` in a RUN's shell command."""
    found = []
    for command in re.split(r"&&|;|\|\|", arguments):
        words = shlex.split(command)
        for start in range(len(words) - 1):
            if words[start].rsplit("/", 1)[-1] in ("pip", "pip3") and words[start + 1] == "install":
                found.append(words[start + 2:])
    return found


def the_install() -> tuple[int, list[str]]:
    """(index of the instruction, pip's arguments) of the RUN that installs the project."""
    installs = [(index, words) for index, (keyword, arguments) in enumerate(dockerfile()) if keyword == "RUN"
                for words in pip_installs(arguments) if "." in words]
    assert len(installs) == 1, f"expected one RUN pip install ., found {installs}"
    return installs[0]


def the_images_files_at_the_install() -> tuple[pathlib.PurePosixPath, dict[pathlib.PurePosixPath, str]]:
    """Build the Dockerfile on paper up to the install: (the working directory
    there, the image paths COPY filled from the context -> context path)."""
    rules = dockerignore()
    index, _ = the_install()
    workdir, files = None, {}
    for keyword, arguments in dockerfile()[:index]:
        if keyword == "WORKDIR":
            workdir = pathlib.PurePosixPath(workdir or "/") / arguments
        if keyword not in ("COPY", "ADD"):
            continue
        assert keyword == "COPY", "ADD fetches and unpacks: COPY says what it does"
        words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        flags = [word for word in words if word.startswith("--")]
        *sources, destination = [word for word in words if not word.startswith("--")]
        assert "--chown=ray:users" in flags, f"COPY {arguments}: owned by the image's user"
        assert not any(flag.startswith("--from") for flag in flags), "one stage, from the context"
        assert workdir or destination.startswith("/"), f"COPY {arguments}: relative to no WORKDIR"
        into = workdir / destination if workdir else pathlib.PurePosixPath(destination)
        as_directory = destination.endswith("/") or len(sources) > 1
        for source in sources:
            assert not set(source) & set("*?["), f"COPY {source}: name the files"
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file or directory in the repository"
            relative = path.relative_to(ROOT).as_posix()
            assert not dockerignored(relative, rules), f"COPY {source}: .dockerignore leaves it out"
            if path.is_dir():  # a directory's contents, not the directory itself
                for file in path.rglob("*"):
                    inside = file.relative_to(ROOT).as_posix()
                    if file.is_file() and not dockerignored(inside, rules):
                        files[into / file.relative_to(path).as_posix()] = inside
            else:
                files[into / path.name if as_directory else into] = relative
    assert workdir is not None, "pip install . runs in no WORKDIR"
    return workdir, files


def test_the_base_image_has_the_ray_and_python_the_project_pins():
    """FROM rayproject/ray:X.Y.Z-pyAB: X.Y.Z satisfies pyproject's ray
    requirement and is the RayCluster's rayVersion; A.B is a Python
    requires-python allows."""
    (base,) = [arguments for keyword, arguments in dockerfile() if keyword == "FROM"]
    image, _, tag = base.split()[0].partition(":")
    assert image == "rayproject/ray", base
    match = re.fullmatch(r"(\d+\.\d+\.\d+)-py(\d)(\d+)", tag)
    assert match, f"{tag}: not a rayproject/ray CPU tag of a Ray release and Python"
    ray_version, python = match[1], f"{match[2]}.{match[3]}"
    metadata = pyproject()["project"]
    (ray,) = [Requirement(line) for line in metadata["dependencies"] if Requirement(line).name == "ray"]
    assert ray.specifier.contains(ray_version), f"the image's Ray {ray_version} is not {ray}"
    assert SpecifierSet(metadata["requires-python"]).contains(python), \
        f"the image's Python {python} is not {metadata['requires-python']}"
    assert raycluster()["spec"]["rayVersion"] == ray_version


def test_the_grid_pods_run_the_image_the_dockerfile_builds():
    """Every container of every Ray pod runs charging-grid:<pyproject's version>,
    the tag the Dockerfile and k8s/README.md say to build."""
    metadata = pyproject()["project"]
    image = f"{metadata['name']}:{metadata['version']}"
    for name, _, spec in groups(raycluster()):
        pod = spec["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert container["image"] == image, f"{name}: {container['name']} runs {container['image']}"
    for document in (DOCKERFILE, K8S / "README.md", GRID / "raycluster.yaml"):
        assert f"docker build -t {image} ." in document.read_text(), f"{document.name}: how to build {image}"


def test_the_dockerfile_installs_the_project_as_the_ray_user():
    index, words = the_install()
    assert "--no-cache-dir" in words, "pip's cache only makes the image bigger"
    assert not {"-e", "--editable", "--user"} & set(words), f"pip install {' '.join(words)}"
    assert DOCKERFILE.read_text().startswith("#"), "the Dockerfile opens with what it is for"
    users = [arguments for keyword, arguments in dockerfile() if keyword == "USER"]
    assert set(users) <= {"ray"}, f"USER {users}: the Ray image's user, never root"
    assert not any(keyword in ("FROM", "COPY", "ADD") for keyword, _ in dockerfile()[index + 1:]), \
        "the install comes after everything it installs"


def test_the_image_has_everything_the_install_needs():
    """At the RUN pip install ., its directory holds pyproject.toml, the readme
    and every file of every package setuptools finds (pyproject's
    [tool.setuptools.packages.find]), at the paths pyproject expects them:
    nothing left out by .dockerignore or copied to the wrong place."""
    from setuptools import find_packages

    workdir, files = the_images_files_at_the_install()
    metadata = pyproject()
    readme = metadata["project"]["readme"]
    needed = ["pyproject.toml", readme if isinstance(readme, str) else readme["file"]]
    find = metadata["tool"]["setuptools"]["packages"]["find"]
    for where in find.get("where", ["."]):
        packages = find_packages(str(ROOT / where), include=find.get("include", ["*"]), exclude=find.get("exclude", []))
        assert packages, f"setuptools finds no package in {where}"
        for package in packages:
            directory = ROOT / where / package.replace(".", "/")
            needed += [file.relative_to(ROOT).as_posix() for file in directory.iterdir()
                       if file.is_file() and file.suffix != ".pyc"]
    missing = [path for path in needed if files.get(workdir / path) != path]
    assert not missing, f"not in {workdir} at the install: {missing[:10]}"


def test_the_build_context_leaves_out_local_state():
    rules = dockerignore()
    for path in (".git/HEAD", ".venv/bin/python", "venv/bin/python", "grid-data/shard-0/CURRENT",
                 "grid/__pycache__/cli.cpython-311.pyc", ".hypothesis/examples/x", ".pytest_cache/v/x",
                 "tests/test_k8s_grid.py", "load_tests/README.md", "build/lib/grid/cli.py", "dist/x.whl",
                 "charging_grid.egg-info/PKG-INFO", "clients/python/charging_grid.egg-info/PKG-INFO",
                 "grid.pem", "grid-key.pem"):
        assert dockerignored(path, rules), f".dockerignore sends {path}"
    for path in ("pyproject.toml", "README.md", "grid/cli.py", "clients/python/grid_client/__init__.py"):
        assert not dockerignored(path, rules), f".dockerignore leaves out {path}"
