"""Fault tests (issue 5): kill -9 of the whole server and of one shard, fault points
between the storage write and the reply, SIGSTOP past a hold's validity, and
deadlines that expire after the commit; each checked against a recorded history.

GRID_FAULT_ROUNDS sets the iterations of each loop (small by default, for CI);
GRID_FAULT_SEED_BASE replays a run (every test prints its seed, and every
assertion message carries it). A summary of kills, pauses, restarts and
operations per test is printed at the end of the run.
"""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "process"))  # server_process

from fault_support import fault_rounds, fault_seed  # noqa: E402

_SUMMARIES: list[str] = []


@pytest.fixture
def seed(request) -> int:
    value = fault_seed()
    print(f"{request.node.name}: seed {value} (replay: GRID_FAULT_SEED_BASE={value})")
    return value


@pytest.fixture
def rounds() -> int:
    return fault_rounds()


@pytest.fixture
def report(request):
    """report(**counts): one summary line per test, printed now and at the end of the run."""

    def emit(**counts) -> str:
        line = f"{request.node.name}: " + ", ".join(f"{key} {value}" for key, value in counts.items())
        print(line)
        _SUMMARIES.append(line)
        return line

    return emit


def pytest_terminal_summary(terminalreporter):
    if _SUMMARIES:
        terminalreporter.section("fault injection summary")
        for line in _SUMMARIES:
            terminalreporter.write_line(line)
