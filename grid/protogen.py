"""Generates the charging.v1 Python stubs from proto/ (one command, checked in CI).

    python -m grid.protogen           # regenerate clients/python/charging/v1
    python -m grid.protogen --check   # fail if the committed stubs are stale
"""

import argparse
import pathlib
import re
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUTPUT_ROOT = ROOT / "clients" / "python"
PROTO_FILES = ["charging/v1/charging.proto"]


def _include_paths() -> list[str]:
    import grpc_tools
    import google.rpc.status_pb2 as status

    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    googleapis = pathlib.Path(status.__file__).parent.parent.parent  # site-packages holding google/rpc
    return [str(PROTO_ROOT), str(well_known), str(googleapis)]


def generate(output_root: pathlib.Path) -> None:
    from grpc_tools import protoc

    output_root.mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc"] + [f"-I{path}" for path in _include_paths()]
    args += [f"--python_out={output_root}", f"--pyi_out={output_root}", f"--grpc_python_out={output_root}"]
    args += PROTO_FILES
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package in ("charging", "charging/v1"):
        init = output_root / package / "__init__.py"
        init.write_text('"""Generated from proto/ by `python -m grid.protogen`; do not edit."""\n')


# The compiler stamps its own version into the stubs. A patch release of
# grpcio-tools (a fresh install picks the newest in the pinned range) changes
# only these stamps, which does not make the stubs stale: staleness is about
# the proto. Each pattern keeps its text up to the version and masks the rest.
_VERSION_STAMPS = (
    re.compile(r"(GRPC_GENERATED_VERSION = )'[0-9.]+'"),
    re.compile(r"(# Protobuf Python Version: )\S+"),
    re.compile(r"(ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,)\s*\d+,\s*\d+,\s*\d+,"),
)


def without_version_stamps(text: str) -> str:
    for stamp in _VERSION_STAMPS:
        text = stamp.sub(r"\1<version>", text)
    return text


def _same_stub(fresh: pathlib.Path, committed: pathlib.Path) -> bool:
    return without_version_stamps(fresh.read_text()) == without_version_stamps(committed.read_text())


def stale_files() -> list[str]:
    with tempfile.TemporaryDirectory() as scratch:
        fresh = pathlib.Path(scratch)
        generate(fresh)
        stale = []
        for path in sorted(fresh.rglob("*")):
            if path.is_file():
                committed = OUTPUT_ROOT / path.relative_to(fresh)
                if not committed.exists() or not _same_stub(path, committed):
                    stale.append(str(committed.relative_to(ROOT)))
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed stubs are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated stubs (run python -m grid.protogen):", *stale, sep="\n  ")
            return 1
        print("generated stubs are up to date")
        return 0
    generate(OUTPUT_ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
