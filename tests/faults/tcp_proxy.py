"""A test-owned TCP proxy between a front door and a shard, on 127.0.0.1 only.

It runs its own event loop on its own thread, so a synchronous test drives it
with plain calls: `cut()` aborts every live connection (both sockets, with
SO_LINGER 0: the peers see a reset), `stall(seconds)` holds every byte in both
directions, or with `direction` in one (the connections stay open; new ones
are held too; `unstall()` ends it early) and
`half_close()` shuts the write side toward the target (the target reads EOF;
bytes the other way still flow).

`route(address)` is a ShardLink.route_through hook: it takes the shard's own
address, remembers it as the target of the connections opened from now on (a
restarted shard listens elsewhere) and returns the proxy's address. Bounded:
at most `live_max` connections open at once and `opened_max` in all; more are
refused (closed at once) and counted.
"""

import asyncio
import socket
import struct
import threading

TO_TARGET, TO_CLIENT = "to_target", "to_client"
LOOPBACK = "127.0.0.1"


class _Connection:
    def __init__(self, client: tuple, target: tuple) -> None:
        self.client_reader, self.client_writer = client
        self.target_reader, self.target_writer = target
        self.half_closed = False
        self.tasks: list[asyncio.Task] = []

    def writers(self):
        return self.client_writer, self.target_writer


class TcpProxy:
    def __init__(self, name: str = "proxy", *, live_max: int = 8, opened_max: int = 200) -> None:
        self.name = name
        self.live_max, self.opened_max = live_max, opened_max
        self.target: str | None = None
        self.opened = 0  # connections forwarded
        self.refused = 0  # connections closed at once (over a bound, no target, target down)
        self.cuts = self.stalls = self.half_closes = 0
        self.held_bytes = {TO_TARGET: 0, TO_CLIENT: 0}  # bytes that waited out a stall
        self._live: set[_Connection] = set()
        self._unstall_timer: asyncio.TimerHandle | None = None
        self._handlers: set[asyncio.Task] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"tcp-{name}", daemon=True)
        self._thread.start()
        self._gates = self._call(self._make_gates())
        self._server = self._call(asyncio.start_server(self._accept, LOOPBACK, 0))
        self.address = f"{LOOPBACK}:{self._server.sockets[0].getsockname()[1]}"

    # ------------------------------------------------------------ commands (any thread)

    def route(self, address: str) -> str:
        host, _, port = address.rpartition(":")
        if host != LOOPBACK or not port.isdigit():
            raise ValueError(f"{self.name}: forwards to {LOOPBACK} only, not {address!r}")
        self.target = address
        return self.address

    @property
    def live(self) -> int:
        return self._call(self._count_live())

    def cut(self) -> int:
        """Abort every live connection now; how many there were."""
        self.cuts += 1
        return self._call(self._cut())

    def stall(self, seconds: float, direction: str | None = None) -> None:
        """Hold the bytes (both ways, or only `direction`) for `seconds`; returns at once."""
        self.stalls += 1
        self._loop.call_soon_threadsafe(self._stall, seconds, direction)

    def unstall(self) -> None:
        self._loop.call_soon_threadsafe(self._unstall)

    def half_close(self) -> int:
        """Shut the write side toward the target on every live connection; how many."""
        self.half_closes += 1
        return self._call(self._half_close())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> "TcpProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ on the proxy's loop

    def _call(self, coroutine, timeout_s: float = 10):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    async def _make_gates(self) -> dict:
        gates = {TO_TARGET: asyncio.Event(), TO_CLIENT: asyncio.Event()}
        for gate in gates.values():
            gate.set()
        return gates

    async def _count_live(self) -> int:
        return len(self._live)

    async def _accept(self, reader, writer) -> None:
        self._handlers.add(asyncio.current_task())
        try:
            await self._forward(reader, writer)
        finally:
            self._handlers.discard(asyncio.current_task())

    async def _forward(self, reader, writer) -> None:
        if self.target is None or len(self._live) >= self.live_max or self.opened >= self.opened_max:
            self.refused += 1
            writer.transport.abort()
            return
        host, _, port = self.target.rpartition(":")
        try:
            target = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout=5)
        except (OSError, asyncio.TimeoutError):
            self.refused += 1
            writer.transport.abort()
            return
        self.opened += 1
        connection = _Connection((reader, writer), target)
        self._live.add(connection)
        connection.tasks = [
            asyncio.create_task(self._pump(connection, reader, connection.target_writer, TO_TARGET)),
            asyncio.create_task(self._pump(connection, connection.target_reader, writer, TO_CLIENT)),
        ]
        await asyncio.gather(*connection.tasks, return_exceptions=True)
        self._live.discard(connection)
        for each in connection.writers():
            each.transport.abort()

    async def _pump(self, connection: _Connection, reader, writer, direction: str) -> None:
        try:
            while data := await reader.read(65536):
                gate = self._gates[direction]
                if not gate.is_set():
                    self.held_bytes[direction] += len(data)
                    await gate.wait()
                if direction == TO_TARGET and connection.half_closed:
                    continue  # the write side is shut: what the client sends now is lost
                writer.write(data)
                await writer.drain()
            if not (direction == TO_TARGET and connection.half_closed) and writer.can_write_eof():
                writer.write_eof()  # pass the end on: the other direction may still flow
        except (ConnectionError, OSError, RuntimeError):
            for each in connection.writers():  # one side reset: so is the other
                each.transport.abort()

    async def _cut(self) -> int:
        connections = list(self._live)
        for connection in connections:
            for writer in connection.writers():
                sock = writer.get_extra_info("socket")
                if sock is not None:  # close with a reset (RST), not an orderly FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            for task in connection.tasks:
                task.cancel()
            self._live.discard(connection)
        return len(connections)

    def _stall(self, seconds: float, direction: str | None) -> None:
        for name in ([direction] if direction else [TO_TARGET, TO_CLIENT]):
            self._gates[name].clear()
        if self._unstall_timer is not None:
            self._unstall_timer.cancel()
        self._unstall_timer = self._loop.call_later(seconds, self._unstall)

    def _unstall(self) -> None:
        if self._unstall_timer is not None:
            self._unstall_timer.cancel()
            self._unstall_timer = None
        for gate in self._gates.values():
            gate.set()

    async def _half_close(self) -> int:
        connections = list(self._live)
        for connection in connections:
            connection.half_closed = True
            if connection.target_writer.can_write_eof():
                connection.target_writer.write_eof()
        return len(connections)

    async def _close(self) -> None:
        self._server.close()
        await self._cut()
        self._unstall()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
        await self._server.wait_closed()
