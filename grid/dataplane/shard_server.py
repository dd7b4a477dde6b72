"""The shard's data-plane listeners: gRPC served from inside the shard actor's
own process, on a thread and event loop of its own (Ray only placed the actor).

Two ports, one server:
- internal (front doors): `grid.dataplane.v1.Shard/Apply`, a long-lived
  bidirectional stream of frames, each many operations packed by the codec
  (grid.dataplane.frames). Front doors learn the address, a per-incarnation
  token and (under TLS) the listener's self-signed certificate from the shard
  actor over Ray, the control plane: a caller without the token is refused,
  and the front door pins the certificate. Operations arrive validated and
  routed; the core's SlotMoved answers a slot that moved away.
- public (clients that hold the shard map): the ChargingService of a front
  door, with the grid's TLS, credentials, tenant rules and limits, over a
  LocalRouter that answers a slot it does not own with SHARD_MAP_STALE.

Both feed one GroupCommitter: whatever arrives while a write syncs is applied
next and written with it.
"""

import asyncio
import datetime
import hmac
import logging
import secrets
import threading

import grpc
from charging.v1 import charging_pb2_grpc as pb_grpc

from grid.dataplane import frames
from grid.dataplane.group_commit import GroupCommitter, QueueFull, overloaded
from grid.dataplane.local_router import LocalRouter

log = logging.getLogger("grid.shard")

def _self_signed() -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for the internal listener, made at start."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, frames.INTERNAL_TLS_NAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=3650))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(frames.INTERNAL_TLS_NAME)]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    return (certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


class ShardServer:
    def __init__(self, shard, config, host: str) -> None:
        self._shard = shard
        self._config = config
        self._host = host
        self._token = secrets.token_hex(16)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self.committer = GroupCommitter(shard, group_operations_max=config.batch_operations_max,
                                        queue_operations_max=config.queue_operations_max,
                                        sweep_interval_s=config.sweep_interval_s)
        self.router = LocalRouter(shard.shard_id, self.committer, config, shard.tracing)
        self.endpoint: dict = {}
        self._thread = threading.Thread(target=self._serve, name=f"shard-{shard.shard_id}-listener", daemon=True)
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    def start(self) -> dict:
        """Listen; returns the endpoint (what front doors need to reach us)."""
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure
        return self.endpoint

    def call(self, coroutine, timeout_s: float | None = None):
        """Run a coroutine on the data-plane loop from Ray's thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def apply_control(self, operations: list) -> list:
        """A control-plane step (a slot move's export, import or drop) in the shard's own order."""
        replies, _ = self.call(self.committer.apply(operations, bounded=False))
        return replies

    def set_shard_map(self, view: dict) -> None:
        self._loop.call_soon_threadsafe(self.router.set_map, view)

    def stop(self) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        try:
            self.call(self._stop(), timeout_s=60)
        except Exception:  # noqa: BLE001 - stopping anyway
            log.warning("shard %d: the data plane did not stop cleanly", self._shard.shard_id, exc_info=True)

    async def _stop(self) -> None:
        await self._server.stop(self._config.shutdown_grace_s)
        await self.committer.close()

    def _serve(self) -> None:
        try:
            import uvloop

            self._loop = uvloop.new_event_loop()
        except ImportError:
            self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._open())
        except BaseException as error:  # noqa: BLE001 - reported to the constructor
            self._failure = error
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _open(self) -> None:
        config = self._config
        self.committer.start()
        server = grpc.aio.server(maximum_concurrent_rpcs=config.calls_max, options=[
            ("grpc.max_receive_message_length", config.message_bytes_max),
            ("grpc.max_send_message_length", config.message_bytes_max),
            ("grpc.max_concurrent_streams", config.streams_per_connection_max),
            ("grpc.so_reuseport", 0),
            *frames.SERVER_KEEPALIVE_OPTIONS,
        ])
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(frames.SERVICE, {
            frames.METHOD: grpc.stream_stream_rpc_method_handler(self._apply_stream)}),))
        certificate_pem = b""
        base = config.shard_port_base
        internal_wanted = base + 2 * self._shard.shard_id if base else 0
        public_wanted = internal_wanted + 1 if base else 0
        if config.tls is not None:
            certificate_pem, key_pem = _self_signed()
            internal_port = server.add_secure_port(f"{self._host}:{internal_wanted}",
                                                   grpc.ssl_server_credentials([(key_pem, certificate_pem)]))
        else:
            internal_port = server.add_insecure_port(f"{self._host}:{internal_wanted}")
        public_address = ""
        if config.shard_listeners_public:
            from grid.frontdoor.servicers import ShardChargingServicer

            pb_grpc.add_ChargingServiceServicer_to_server(ShardChargingServicer(self.router, config), server)
            if config.tls is not None:
                cert, key, client_ca = config.tls.read()
                public_port = server.add_secure_port(f"{self._host}:{public_wanted}", grpc.ssl_server_credentials(
                    [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None))
            else:
                public_port = server.add_insecure_port(f"{self._host}:{public_wanted}")
            if public_port == 0:
                raise OSError(f"shard {self._shard.shard_id}: cannot listen on {self._host}:{public_wanted}")
            public_address = f"{self._host}:{public_port}"
        if internal_port == 0:
            raise OSError(f"shard {self._shard.shard_id}: cannot listen on {self._host}:{internal_wanted}")
        await server.start()
        self._server = server
        self.endpoint = {"shard_id": self._shard.shard_id, "shard_epoch": self._shard.state.meta.epoch,
                         "internal": f"{self._host}:{internal_port}", "public": public_address,
                         "token": self._token, "certificate_pem": certificate_pem}
        log.info("shard %d epoch %d serves the data plane on %s (public %s)", self._shard.shard_id,
                 self._shard.state.meta.epoch, self.endpoint["internal"], public_address or "none")

    async def _apply_stream(self, request_iterator, context):
        """One front door's stream: frames in, replies out as their groups commit."""
        token = dict(context.invocation_metadata()).get(frames.TOKEN_HEADER, "")
        if not hmac.compare_digest(str(token), self._token):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not a front door of this grid")
        replies: asyncio.Queue = asyncio.Queue()  # bounded by the committer's queue: one reply per frame
        outstanding = 0
        reading = True

        def answer(sequence: int, items: list, newest: int) -> None:
            nonlocal outstanding
            outstanding -= 1
            replies.put_nowait(frames.pack_reply(sequence, newest, items))
            if not reading and outstanding == 0:
                replies.put_nowait(None)

        async def read() -> None:
            nonlocal outstanding, reading
            try:
                async for payload in request_iterator:
                    sequence, trace, operations = frames.unpack_frame(payload)
                    outstanding += 1
                    try:
                        self.committer.submit(frames.frame_for(sequence, operations, trace, answer))
                    except QueueFull as full:
                        answer(sequence, overloaded(len(operations), str(full)), 0)
            finally:
                reading = False
                if outstanding == 0:
                    replies.put_nowait(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while (reply := await replies.get()) is not None:
                yield reply
        finally:
            reader.cancel()
