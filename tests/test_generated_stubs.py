"""The committed charging.v1 stubs are exactly what proto/ generates (never hand-edited, never stale)."""

import pathlib

from grid import protogen

GRPC_STUB = pathlib.Path(protogen.OUTPUT_ROOT) / "charging" / "v1" / "charging_pb2_grpc.py"
MESSAGES_STUB = pathlib.Path(protogen.OUTPUT_ROOT) / "charging" / "v1" / "charging_pb2.py"


def test_generated_stubs_match_the_proto():
    assert protogen.stale_files() == [], "run: python -m grid.protogen"


def test_a_newer_compiler_patch_release_alone_does_not_make_the_stubs_stale():
    # CI failed once when a fresh install picked grpcio-tools 1.85.4 over the
    # 1.85.1 that wrote the committed stubs: only the version stamps differed.
    grpc_text = GRPC_STUB.read_text()
    assert "GRPC_GENERATED_VERSION = '" in grpc_text
    restamped = grpc_text.replace("GRPC_GENERATED_VERSION = '", "GRPC_GENERATED_VERSION = '9.99.99", 1)
    assert restamped != grpc_text
    assert protogen.without_version_stamps(restamped) == protogen.without_version_stamps(grpc_text)

    messages_text = MESSAGES_STUB.read_text()
    assert "# Protobuf Python Version: " in messages_text
    assert "ValidateProtobufRuntimeVersion(" in messages_text
    restamped = messages_text.replace("# Protobuf Python Version: ", "# Protobuf Python Version: 99.", 1)
    restamped = restamped.replace("_runtime_version.Domain.PUBLIC,\n    ", "_runtime_version.Domain.PUBLIC,\n    99", 1)
    assert "Domain.PUBLIC,\n    99" in restamped
    assert protogen.without_version_stamps(restamped) == protogen.without_version_stamps(messages_text)


def test_a_change_beyond_the_version_stamps_is_still_stale():
    grpc_text = GRPC_STUB.read_text()
    changed = grpc_text.replace("/charging.v1.ChargingService/Reserve", "/charging.v1.ChargingService/Reserve2", 1)
    assert changed != grpc_text
    assert protogen.without_version_stamps(changed) != protogen.without_version_stamps(grpc_text)


def _floor(package: str) -> tuple[int, ...]:
    import re
    import tomllib

    project = tomllib.loads((pathlib.Path(protogen.ROOT) / "pyproject.toml").read_text())["project"]
    floors = [re.fullmatch(rf"{package}>=([0-9.]+),<([0-9.]+)", dep) for dep in project["dependencies"]]
    [floor] = [match.group(1) for match in floors if match]
    return tuple(int(part) for part in floor.split("."))


def test_the_grpcio_and_protobuf_floors_in_pyproject_run_the_committed_stubs():
    # The stubs refuse to import under a grpcio or protobuf older than the
    # compiler that wrote them (or protobuf of another major version), so the
    # install's floors must be at least those versions.
    import re

    stamped = re.search(r"GRPC_GENERATED_VERSION = '([0-9.]+)'", GRPC_STUB.read_text()).group(1)
    assert _floor("grpcio") >= tuple(int(part) for part in stamped.split(".")), f"the stubs need grpcio>={stamped}"
    runtime = re.search(r"Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", MESSAGES_STUB.read_text())
    needed = tuple(int(part) for part in runtime.groups())
    assert _floor("protobuf") >= needed and _floor("protobuf")[0] == needed[0], f"the stubs need protobuf>={needed}"
