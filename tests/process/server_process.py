"""`grid serve` as a real subprocess in its own session, for restart and kill -9 tests.

The server runs in a new session so that it and every Ray process it starts
(GCS, raylet, shard workers) share one session id: kill() ends them all with
SIGKILL, like a machine losing power, and nothing is left behind.
"""

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import psutil

STARTUP_TIMEOUT_S = 120
LISTENING = re.compile(r"grid listening on [^ ]*:(\d+) ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(self, data_dir: pathlib.Path, shards: int = 2, ray_address: str | None = None,
                 env: dict | None = None) -> None:
        self.env = env or {}
        self.data_dir = data_dir
        self.shards = shards
        self.ray_address = ray_address
        self.port = 0  # known once started: the server picks it
        self.process: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self.extra_args: list[str] = []  # more `grid serve` flags

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "ServerProcess":
        return self._launch(["--shards", str(self.shards)]
                            + (["--ray-address", self.ray_address] if self.ray_address else []) + self.extra_args)

    def _launch(self, serve_args: list[str], failure_context: str = "") -> "ServerProcess":
        """`grid serve --port 0 ...`: the server binds a port the kernel chooses and
        prints it. (A port picked here and passed in could be taken by a Ray worker
        before the server binds it: CI saw exactly that.)"""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "grid.cli", "serve", "--data-dir", str(self.data_dir), "--port", "0", "--plaintext",
             *serve_args],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "RAY_DEDUP_LOGS": "0", **self.env},
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.process.stdout.readline().decode()
            listening = LISTENING.search(line)
            if listening:
                self.port = int(listening.group(1))
                return self
            if not line and self.process.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"grid serve did not start{failure_context}; see {self.log_path}:\n"
                           f"{self.log_path.read_text()[-3000:]}")

    def _session_processes(self) -> list[psutil.Process]:
        session = self.process.pid  # session leader: its pid is the session id
        found = []
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getsid(proc.pid) == session:
                    found.append(proc)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
        return found

    def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM: the graceful stop a user's Ctrl-C or an orchestrator gives."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            self.kill()  # whatever is left of the session

    def kill(self) -> None:
        """SIGKILL to every process of the server's session, then wait for them."""
        if self.process is None:
            return
        procs = self._session_processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=30)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


class RayHead:
    """A separate Ray cluster (`ray start --head --block`) in its own session, for
    `grid serve --ray-address`; stop() ends that session's processes only."""

    def __init__(self) -> None:
        import secrets

        self.port = free_port()  # the GCS port; `ray start` cannot report one it chose
        self.process: subprocess.Popen | None = None
        # Ray clusters started by `ray start` require a token; the grid joins with it.
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "RayHead":
        ray_command = pathlib.Path(sys.executable).parent / "ray"
        self.process = subprocess.Popen(
            [str(ray_command), "start", "--head", "--block", f"--port={self.port}", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.process.poll() is not None:
                raise RuntimeError("ray start --head exited")
            time.sleep(0.2)
        raise RuntimeError("ray start --head did not listen in time")

    def stop(self) -> None:
        if self.process is not None:
            ServerProcess.kill(self)  # same session logic: every process of its session

    _session_processes = ServerProcess._session_processes
