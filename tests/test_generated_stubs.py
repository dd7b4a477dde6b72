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


def test_the_grpcio_floor_in_pyproject_runs_the_committed_stubs():
    # The stub refuses to import under a grpcio older than the compiler that
    # wrote it, so the install's floor must be at least that version.
    import re
    import tomllib

    stamped = re.search(r"GRPC_GENERATED_VERSION = '([0-9.]+)'", GRPC_STUB.read_text()).group(1)
    project = tomllib.loads((pathlib.Path(protogen.ROOT) / "pyproject.toml").read_text())["project"]
    floors = [re.match(r"grpcio>=([0-9.]+)", dep) for dep in project["dependencies"]]
    floor = next(match.group(1) for match in floors if match)

    def as_tuple(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    assert as_tuple(floor) >= as_tuple(stamped), f"pyproject grpcio>={floor} but the stubs need grpcio>={stamped}"
