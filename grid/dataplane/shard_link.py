"""A front door's long-lived stream to one shard's data-plane listener.

`apply(operations, trace)` sends one frame and awaits its reply. Frames and
replies travel on one bidirectional gRPC stream per shard, so the shard sees
them in the order they were sent (per-subscriber order). The endpoint
(address, token, pinned certificate) comes from the shard actor over Ray,
once per connection: after a broken connection or a restarted shard (whose
address changes) the next frame reconnects to whatever incarnation Ray runs
now. Every frame in flight when the stream breaks fails with LinkBroken: it
may or may not have been applied, and the batcher resends it with the same
request ids (idempotency makes the replies exact).
"""

import asyncio
import itertools
import logging

import grpc

from grid.controlplane import cluster
from grid.dataplane import frames

log = logging.getLogger("grid.link")


class LinkBroken(Exception):
    """The stream to the shard broke (or never opened) with this frame in flight."""


# Errors after which a frame may or may not have been applied: resend it with the same request ids.
RETRYABLE_ERRORS = (LinkBroken, *cluster.RETRYABLE_ERRORS)


class ShardLink:
    def __init__(self, shard_id: int, handle, message_bytes_max: int) -> None:
        self.shard_id = shard_id
        self._handle = handle
        self._message_bytes_max = message_bytes_max
        self._sequences = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._call = None
        self._channel: grpc.aio.Channel | None = None
        self._reader: asyncio.Task | None = None
        self._connecting = asyncio.Lock()
        self._writing = asyncio.Lock()
        self.endpoint: dict = {}
        # Where to dial instead of the shard's own address (a test's TCP proxy): address -> address.
        self.route_through = None
        self.connections = 0

    async def apply(self, operations: list, trace: dict | None = None) -> tuple[list, int]:
        """The shard's replies to the operations, and its newest notification sequence."""
        call = await self._connected()
        sequence = next(self._sequences)
        future = asyncio.get_running_loop().create_future()
        self._pending[sequence] = future
        try:
            async with self._writing:  # one writer at a time on a stream
                await call.write(frames.pack_frame(sequence, trace, operations))
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError, RuntimeError) as error:
            self._pending.pop(sequence, None)
            self._broken(call, error)
            raise LinkBroken(f"shard {self.shard_id}: the stream broke while sending ({error!r})") from None
        return await future

    async def _connected(self):
        if self._call is not None:
            return self._call
        async with self._connecting:
            if self._call is None:
                await self._connect()
            return self._call

    async def _connect(self) -> None:
        try:
            endpoint = await cluster.data_plane_endpoint(self._handle)
        except cluster.RETRYABLE_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001 - the actor is not there yet
            raise LinkBroken(f"shard {self.shard_id}: no endpoint ({error!r})") from None
        address = endpoint["internal"]
        if self.route_through is not None:
            address = self.route_through(address)
        options = [("grpc.max_receive_message_length", self._message_bytes_max),
                   ("grpc.max_send_message_length", self._message_bytes_max), *frames.KEEPALIVE_OPTIONS]
        if endpoint["certificate_pem"]:
            options.append(("grpc.ssl_target_name_override", frames.INTERNAL_TLS_NAME))
            channel = grpc.aio.secure_channel(
                address, grpc.ssl_channel_credentials(root_certificates=endpoint["certificate_pem"]), options)
        else:
            channel = grpc.aio.insecure_channel(address, options)
        call = channel.stream_stream(frames.PATH)(metadata=((frames.TOKEN_HEADER, endpoint["token"]),),
                                                  wait_for_ready=False)
        old = self._channel
        self._channel, self._call, self.endpoint = channel, call, endpoint
        self.connections += 1
        self._reader = asyncio.get_running_loop().create_task(self._read(call), name=f"link-{self.shard_id}")
        if old is not None:
            asyncio.get_running_loop().create_task(old.close())
        if self.connections > 1:
            log.warning("shard %d: data-plane stream open again to %s (incarnation %d)", self.shard_id, address,
                        endpoint["shard_epoch"])

    async def _read(self, call) -> None:
        error: BaseException | None = None
        try:
            async for payload in call:
                sequence, newest, replies = frames.unpack_reply(payload)
                future = self._pending.pop(sequence, None)
                if future is not None and not future.done():
                    future.set_result((replies, newest))
            error = LinkBroken("the shard ended the stream")
        except asyncio.CancelledError:
            error = LinkBroken("the front door closed the stream")
            raise
        except Exception as failure:  # noqa: BLE001 - every frame in flight must hear back
            error = failure
        finally:
            self._broken(call, error)

    def _broken(self, call, error: BaseException | None) -> None:
        """Fail every frame in flight on this stream; the next frame reconnects."""
        if self._call is call:
            self._call = None
            if self._pending:
                log.warning("shard %d: data-plane stream broke with %d frames in flight: %r", self.shard_id,
                            len(self._pending), error)
            pending, self._pending = self._pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_exception(LinkBroken(f"shard {self.shard_id}: the stream broke ({error!r})"))
            call.cancel()

    async def close(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            try:
                await call.done_writing()
            except Exception:  # noqa: BLE001 - already broken
                pass
        if self._reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), timeout=5)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):  # noqa: BLE001
                self._reader.cancel()
        if self._channel is not None:
            await self._channel.close()
