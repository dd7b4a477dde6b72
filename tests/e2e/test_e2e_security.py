"""Security end to end (issue 9, TESTING.md layer 6): one grid for the module
serving mutual TLS with a throwaway CA (trustme), API keys and RS256 bearer
tokens for two tenants, driven over real gRPC.

1. TLS: plaintext, no client certificate, a client certificate of another CA, a
   server CA the client does not trust, the wrong server name: all refused.
2. API keys: every RPC refuses a missing, unknown or malformed credential
   (UNAUTHENTICATED) and a key without the RPC's scope (PERMISSION_DENIED naming
   the scope), and lets the scope's key through.
3. JWT: a valid token's tenant claim decides the tenant; expired, foreign,
   forged, unsigned and incomplete tokens are refused. Tenant B asking about
   tenant A's subscriber gets exactly what it gets for a subscriber that exists
   nowhere, and A's account and journal do not move.
4. Isolation: the same subscriber id, request id and plan name in two tenants
   are separate; another tenant's hold, charge and session ids are not found;
   CDR export, disputes and notifications stay in the caller's tenant.
5. Rate limits (a second, small grid): RESOURCE_EXHAUSTED with RetryInfo and
   QuotaFailure per subscriber and per tenant; a refused request did nothing,
   and the same request after the delay succeeds.
6. The admin audit log: one line per admin call, who/what/outcome/trace id.
7. Listener rules: `grid serve` refuses an open front door before starting.

Ray is the session's (the `embedded` fixture starts it; these grids join it).
"""

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import os
import pathlib
import queue
import subprocess
import sys
import threading
import time
import types

import grpc
import jwt
import pytest
import trustme
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf import text_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from e2e_support import (
    FUNDS,
    RATES,
    SMS,
    SMS_MICROS,
    VOICE,
    ServingGrid,
    create_account_request,
    debit_request,
    new_id,
    open_account,
    put_plan,
    refund_request,
    release_request,
    reserve_request,
    set_state_request,
    top_up_request,
    view_error,
)
from grid import security
from grid.config import GridConfig
from grid.server import EmbeddedGrid, Grid
from grid_client import AsyncChargingClient, ChargingClient, Credentials, GridError, Overloaded, RetryPolicy

pytestmark = pytest.mark.slow

TENANT_A, TENANT_B, TENANT_OPS = "tenant-a", "tenant-b", "tenant-ops"
ISSUER, AUDIENCE = "https://idp.example.test/", "charging-grid-test"
LEEWAY_S = 5
SERVER_NAME = "localhost"  # the server certificate is issued to 127.0.0.1 and localhost

CHARGING, POLICY, ACCOUNTS = security.SCOPE_CHARGING, security.SCOPE_POLICY, security.SCOPE_ACCOUNTS
CATALOG, ADMIN, OPERATOR = security.SCOPE_CATALOG, security.SCOPE_ADMIN, security.SCOPE_OPERATOR
ALL_SCOPES = security.ALL_SCOPES


def _short(scope: str) -> str:
    return scope.split(":", 1)[1]


# API key name -> (tenant, scopes). The key itself is secret_of(name); the grid is
# configured with its SHA-256 only.
KEYS: dict[str, tuple[str, frozenset]] = {
    "admin-a": (TENANT_A, ALL_SCOPES - {OPERATOR}),
    "admin-b": (TENANT_B, ALL_SCOPES - {OPERATOR}),
    "operator": (TENANT_OPS, ALL_SCOPES),
    "nf-a": (TENANT_A, frozenset({CHARGING})),
    "nf-b": (TENANT_B, frozenset({CHARGING})),
    **{f"only-{_short(scope)}": (TENANT_A, frozenset({scope})) for scope in ALL_SCOPES},
    **{f"without-{_short(scope)}": (TENANT_A, ALL_SCOPES - {scope}) for scope in ALL_SCOPES},
}


def secret_of(name: str) -> str:
    return f"grid-test-key-{name}-0123456789abcdef"


def auth_entries() -> list[dict]:
    return [{"name": name, "tenant": tenant, "key_sha256": security.hash_key(secret_of(name)),
             "scopes": sorted(scopes)} for name, (tenant, scopes) in KEYS.items()]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------- PKI and tokens


def pem_chain(leaf: trustme.LeafCert) -> bytes:
    return b"".join(blob.bytes() for blob in leaf.cert_chain_pems)


@dataclasses.dataclass
class Pki:
    """The grid's CA (server and client certificates) and a rogue CA with its own client certificate."""

    directory: pathlib.Path
    ca: trustme.CA
    server: trustme.LeafCert
    client: trustme.LeafCert
    rogue_ca: trustme.CA
    rogue_client: trustme.LeafCert

    @classmethod
    def make(cls, directory: pathlib.Path) -> "Pki":
        ca, rogue_ca = trustme.CA(), trustme.CA()
        pki = cls(directory, ca, ca.issue_cert("127.0.0.1", "localhost"), ca.issue_cert("smf-1.example.test"),
                  rogue_ca, rogue_ca.issue_cert("smf-1.example.test"))
        pki.server.private_key_pem.write_to_path(str(directory / "server-key.pem"))
        (directory / "server-cert.pem").write_bytes(pem_chain(pki.server))
        ca.cert_pem.write_to_path(str(directory / "client-ca.pem"))
        ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        pki.client.private_key_pem.write_to_path(str(directory / "client-key.pem"))
        (directory / "client-cert.pem").write_bytes(pem_chain(pki.client))
        return pki

    @property
    def tls_files(self) -> security.TlsFiles:
        return security.TlsFiles(self.directory / "server-cert.pem", self.directory / "server-key.pem",
                                 self.directory / "client-ca.pem")

    def credentials(self, **overrides) -> Credentials:
        fields = dict(root_certificates=self.ca.cert_pem.bytes(), certificate_chain=pem_chain(self.client),
                      private_key=self.client.private_key_pem.bytes(), server_name=SERVER_NAME)
        fields.update(overrides)
        return Credentials(**fields)


def tls_channel(target: str, root: bytes | None, leaf: trustme.LeafCert | None,
                server_name: str = SERVER_NAME) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root, leaf.private_key_pem.bytes() if leaf else None, pem_chain(leaf) if leaf else None)
    return grpc.secure_channel(target, credentials, options=[("grpc.ssl_target_name_override", server_name)])


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned_parts(header: dict, claims: dict) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


@dataclasses.dataclass
class Issuer:
    """Signs tokens with the key the grid trusts (or another)."""

    key: rsa.RSAPrivateKey
    public_pem: bytes
    other_key: rsa.RSAPrivateKey

    def claims(self, **overrides) -> dict:
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "pcf-7", "exp": int(time.time()) + 300,
                  "tenant": TENANT_A, "scope": f"{CHARGING} {ACCOUNTS}"}
        for name, value in overrides.items():
            if value is DROP:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def token(self, key: rsa.RSAPrivateKey | None = None, **overrides) -> str:
        return jwt.encode(self.claims(**overrides), _private_pem(key or self.key), algorithm="RS256")

    def unsigned(self, **overrides) -> str:
        """alg "none": no signature at all."""
        return _unsigned_parts({"alg": "none", "typ": "JWT"}, self.claims(**overrides)) + "."

    def hs256(self, secret: bytes, **overrides) -> str:
        """An HMAC token keyed with secret (the algorithm-confusion attack uses the public key)."""
        signing_input = _unsigned_parts({"alg": "HS256", "typ": "JWT"}, self.claims(**overrides))
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature)


DROP = object()

# ---------------------------------------------------------------- stubs with a credential


class Bound:
    """A generated stub whose calls carry one credential (and default timeout)."""

    def __init__(self, stub, metadata: tuple) -> None:
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name):
        method = getattr(self._stub, name)

        def call(request, timeout: float = 30, extra_metadata: tuple = ()):
            metadata = tuple(self._metadata) + tuple(extra_metadata)
            return method(request, timeout=timeout, metadata=metadata or None)

        return call


def bound_stubs(channel: grpc.Channel, metadata: tuple = ()) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        channel=channel,
        charging=Bound(pb_grpc.ChargingServiceStub(channel), metadata),
        account=Bound(pb_grpc.AccountServiceStub(channel), metadata),
        catalog=Bound(pb_grpc.CatalogServiceStub(channel), metadata),
        policy=Bound(pb_grpc.SpendingLimitServiceStub(channel), metadata),
        admin=Bound(pb_grpc.AdminServiceStub(channel), metadata),
    )


def key_metadata(name: str) -> tuple:
    return (("x-api-key", secret_of(name)),)


def bearer(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


class SecureGrid:
    def __init__(self, data_dir: pathlib.Path, pki: Pki, issuer: Issuer) -> None:
        self.pki = pki
        auth = security.parse_auth({
            "api_keys": auth_entries(),
            "jwt": {"issuer": ISSUER, "audience": AUDIENCE, "key": issuer.public_pem.decode(),
                    "algorithms": ["RS256"], "leeway_s": LEEWAY_S},
        })
        self.config = GridConfig(data_dir=data_dir, port=0, shards=2, tls=pki.tls_files, auth=auth)
        self.embedded = EmbeddedGrid(self.config)
        self.embedded.start()
        self.target = self.embedded.target
        self.channel = tls_channel(self.target, pki.ca.cert_pem.bytes(), pki.client)

    def stubs(self, key: str | None = None, token: str | None = None, metadata: tuple = ()) -> types.SimpleNamespace:
        if key is not None:
            metadata = key_metadata(key) + tuple(metadata)
        if token is not None:
            metadata = bearer(token) + tuple(metadata)
        return bound_stubs(self.channel, metadata)

    def shard_of(self, tenant: str, subscriber_id: str) -> int:
        return self.embedded.grid.shard_for(tenant, subscriber_id)

    def same_shard_id(self, prefix: str = "sub-") -> str:
        """A subscriber id that tenant A's and tenant B's accounts of that id share a shard with:
        there, A's hold, charge and session ids are really present when B names them."""
        for _ in range(1000):
            candidate = new_id(prefix)
            if self.shard_of(TENANT_A, candidate) == self.shard_of(TENANT_B, candidate):
                return candidate
        raise AssertionError("no shared-shard id in 1000 tries")

    @property
    def admin_log_path(self) -> pathlib.Path:
        return self.config.data_dir / self.config.admin_log_name

    def admin_log(self) -> list[dict]:
        if not self.admin_log_path.exists():
            return []
        return [json.loads(line) for line in self.admin_log_path.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        self.channel.close()
        self.embedded.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    key = _rsa_key()
    return Issuer(key, _public_pem(key), _rsa_key())


@pytest.fixture(scope="module")
def grid(embedded, tmp_path_factory, pki, issuer) -> SecureGrid:
    """`embedded` first: Ray is up, so this grid joins it and never stops it."""
    secure = SecureGrid(tmp_path_factory.mktemp("grid-e2e-security") / "data", pki, issuer)
    try:
        yield secure
    finally:
        secure.stop()


@pytest.fixture(scope="module")
def plan_a(grid) -> str:
    return put_plan(grid.stubs(key="admin-a"))


@pytest.fixture
def subscriber_a(grid, plan_a) -> str:
    """A funded account of tenant A."""
    return open_account(grid.stubs(key="admin-a"), plan_a).id


# ---------------------------------------------------------------- reading outcomes


def refused(call, *args, **kwargs):
    """The ErrorView of a call that must fail."""
    try:
        reply = call(*args, **kwargs)
        if isinstance(reply, grpc.Call) or hasattr(reply, "__next__"):
            reply = list(reply)
    except grpc.RpcError as error:
        return view_error(error)
    raise AssertionError(f"the call succeeded: {reply}")


def status_details(error: grpc.RpcError) -> dict:
    """The google.rpc details of a failed call, by type."""
    found = {}
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo, error_details_pb2.QuotaFailure,
                     error_details_pb2.BadRequest):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found[kind.__name__] = message
    return found


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    try:
        reply = call(*args, **kwargs)
    except grpc.RpcError as error:
        return error
    raise AssertionError(f"the call succeeded: {reply}")


def money_of(stubs, subscriber_id: str) -> tuple:
    reply = stubs.charging.GetBalance(pb.GetBalanceRequest(subscriber_id=subscriber_id))
    assert reply.result == pb.SUCCESS, reply
    return reply.balance_micros, reply.reserved_micros, reply.available_micros


# ================================================================ 1. TLS


TLS_REFUSALS = {
    # name -> how the client connects
    "plaintext": lambda target, pki: grpc.insecure_channel(target),
    "no-client-certificate": lambda target, pki: tls_channel(target, pki.ca.cert_pem.bytes(), None),
    "client-certificate-of-another-ca": lambda target, pki: tls_channel(target, pki.ca.cert_pem.bytes(),
                                                                         pki.rogue_client),
    "server-ca-not-trusted": lambda target, pki: tls_channel(target, pki.rogue_ca.cert_pem.bytes(), pki.client),
    "wrong-server-name": lambda target, pki: tls_channel(target, pki.ca.cert_pem.bytes(), pki.client,
                                                         server_name="not-the-grid.example.test"),
}


@pytest.mark.parametrize("how", sorted(TLS_REFUSALS))
def test_tls_refuses_a_client_that_is_not_set_up_for_it(grid, subscriber_a, how):
    channel = TLS_REFUSALS[how](grid.target, grid.pki)
    try:
        stubs = bound_stubs(channel, key_metadata("admin-a"))
        error = refused(stubs.charging.GetBalance, pb.GetBalanceRequest(subscriber_id=subscriber_a), timeout=10)
        assert error.code == grpc.StatusCode.UNAVAILABLE, error
    finally:
        channel.close()


def test_tls_with_the_right_certificates_works(grid, subscriber_a):
    # Raw stubs on a mutual-TLS channel.
    assert money_of(grid.stubs(key="admin-a"), subscriber_a) == (FUNDS, 0, FUNDS)
    # The blocking client, the asyncio client: Credentials carry certificates and the key.
    credentials = grid.pki.credentials(api_key=secret_of("admin-a"))
    with ChargingClient(grid.target, credentials=credentials) as client:
        assert client.balance(subscriber_a).balance_micros == FUNDS

    async def async_balance():
        client = AsyncChargingClient(grid.target, credentials=credentials)
        try:
            return await client.balance(subscriber_a)
        finally:
            await client.close()

    assert asyncio.run(async_balance()).balance_micros == FUNDS
    # The same client without the client certificate is refused.
    no_certificate = grid.pki.credentials(api_key=secret_of("admin-a"), certificate_chain=None, private_key=None)
    with ChargingClient(grid.target, credentials=no_certificate, retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(GridError) as raised:
            client.balance(subscriber_a)
        assert raised.value.code == grpc.StatusCode.UNAVAILABLE


def test_client_cli_reads_its_credentials_from_the_environment(grid, subscriber_a, tmp_path):
    directory = grid.pki.directory
    env = {**os.environ, "GRID_TLS_CA": str(directory / "ca.pem"), "GRID_TLS_CERT": str(directory / "client-cert.pem"),
           "GRID_TLS_KEY": str(directory / "client-key.pem"), "GRID_TLS_SERVER_NAME": SERVER_NAME,
           "GRID_API_KEY": secret_of("admin-a")}
    command = [sys.executable, "-m", "grid.cli", "--target", grid.target, "account", "get", subscriber_a]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["account"]["balance_micros"] == FUNDS, done.stdout
    # Without the key: the grid refuses, the command says why.
    env.pop("GRID_API_KEY")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "UNAUTHENTICATED" in done.stderr, (done.returncode, done.stderr)


# ================================================================ 2. API keys and scopes


@dataclasses.dataclass(frozen=True)
class Rpc:
    service: str  # attribute of bound_stubs
    method: str
    scope: str
    request: object  # subscriber_id -> request message
    shape: str = "unary"  # or "server_stream", "bidi"

    def invoke(self, stubs, subscriber_id: str, timeout: float = 10):
        method = getattr(getattr(stubs, self.service), self.method)
        request = self.request(subscriber_id)
        if self.shape == "unary":
            return method(request, timeout=timeout)
        if self.shape == "server_stream":
            return list(method(request, timeout=timeout))
        return list(method(iter([request]), timeout=timeout))


SERVICE_NAMES = {"charging": "ChargingService", "policy": "SpendingLimitService", "account": "AccountService",
                 "catalog": "CatalogService", "admin": "AdminService"}


def _create_session(subscriber_id: str) -> pb.CreateSessionRequest:
    return pb.CreateSessionRequest(session_id=new_id("session-"), subscriber_id=subscriber_id,
                                   invocation_sequence_number=1,
                                   multiple_unit_usage=[pb.MultipleUnitUsage(rating_group=VOICE, requested_units=10)])


RPCS = [
    Rpc("charging", "Reserve", CHARGING, lambda s: reserve_request(s, 1, SMS)),
    Rpc("charging", "Debit", CHARGING, lambda s: debit_request(s, 1, rating_group=SMS)),
    Rpc("charging", "Release", CHARGING, lambda s: release_request(s, "no-such-hold")),
    Rpc("charging", "Refund", CHARGING, lambda s: refund_request(s, "no-such-charge", 1)),
    Rpc("charging", "TopUp", ACCOUNTS, lambda s: top_up_request(s, 1)),
    Rpc("charging", "GetBalance", CHARGING, lambda s: pb.GetBalanceRequest(subscriber_id=s)),
    Rpc("charging", "GetTransaction", CHARGING, lambda s: pb.GetTransactionRequest(subscriber_id=s,
                                                                                  request_id=new_id())),
    Rpc("charging", "Charge", CHARGING,
        lambda s: pb.ChargeRequest(correlation_tag=1, reserve=reserve_request(s, 1, SMS)), "bidi"),
    Rpc("charging", "CreateSession", CHARGING, _create_session),
    Rpc("charging", "UpdateSession", CHARGING,
        lambda s: pb.UpdateSessionRequest(session_id=new_id("session-"), subscriber_id=s,
                                          invocation_sequence_number=2)),
    Rpc("charging", "ReleaseSession", CHARGING,
        lambda s: pb.ReleaseSessionRequest(session_id=new_id("session-"), subscriber_id=s,
                                           invocation_sequence_number=2)),
    Rpc("charging", "GetSession", CHARGING, lambda s: pb.GetSessionRequest(subscriber_id=s, session_id="none")),
    Rpc("charging", "WatchNotifications", CHARGING,
        lambda s: pb.WatchNotificationsRequest(client_id="scope-probe"), "server_stream"),
    Rpc("charging", "Quote", CHARGING, lambda s: pb.QuoteRequest(subscriber_id=s, rating_group=VOICE, used_units=60)),
    Rpc("charging", "ChargeBatch", CHARGING, lambda s: pb.ChargeBatchRequest(operations=[
        pb.ChargeRequest(correlation_tag=1, reserve=reserve_request(s, 1, SMS))])),
    Rpc("charging", "GetShardMap", CHARGING, lambda s: pb.GetShardMapRequest()),
    Rpc("policy", "Subscribe", POLICY,
        lambda s: pb.SubscribeRequest(request_id=new_id(), subscriber_id=s, client_id="pcf-probe")),
    Rpc("policy", "Unsubscribe", POLICY,
        lambda s: pb.UnsubscribeRequest(request_id=new_id(), subscriber_id=s, client_id="pcf-probe")),
    Rpc("policy", "WatchStatus", POLICY, lambda s: pb.WatchStatusRequest(client_id="pcf-probe"), "server_stream"),
    Rpc("policy", "GetCounters", POLICY, lambda s: pb.GetCountersRequest(subscriber_id=s)),
    Rpc("account", "CreateAccount", ACCOUNTS, lambda s: create_account_request(new_id("sub-"), "no-such-plan")),
    Rpc("account", "GetAccount", ACCOUNTS, lambda s: pb.GetAccountRequest(subscriber_id=s)),
    Rpc("account", "SetAccountState", ACCOUNTS, lambda s: set_state_request(s, pb.ACTIVE)),
    Rpc("account", "GetBillingCycle", ACCOUNTS, lambda s: pb.GetBillingCycleRequest(subscriber_id=s)),
    Rpc("account", "DelegateFromPool", ACCOUNTS,
        lambda s: pb.DelegateFromPoolRequest(request_id=new_id(), pool_id=s, member_id=new_id("member-"),
                                             amount_micros=1)),
    Rpc("account", "ReclaimToPool", ACCOUNTS,
        lambda s: pb.ReclaimToPoolRequest(request_id=new_id(), pool_id=s, member_id=new_id("member-"))),
    Rpc("catalog", "PutTariff", CATALOG, lambda s: pb.PutTariffRequest(tariff_plan_id=new_id("plan-"), rates=RATES)),
    Rpc("catalog", "GetTariff", CATALOG, lambda s: pb.GetTariffRequest(tariff_plan_id="no-such-plan")),
    Rpc("admin", "Dispute", ADMIN, lambda s: pb.DisputeRequest(subscriber_id=s, from_ms=1)),
    Rpc("admin", "ExportCdrs", ADMIN, lambda s: pb.ExportCdrsRequest(limit=1)),
    Rpc("admin", "CreateSnapshot", OPERATOR, lambda s: pb.CreateSnapshotRequest(label="scope probe")),
    Rpc("admin", "ListSnapshots", OPERATOR, lambda s: pb.ListSnapshotsRequest()),
    Rpc("admin", "RestoreSnapshot", OPERATOR, lambda s: pb.RestoreSnapshotRequest()),
    Rpc("admin", "Audit", OPERATOR, lambda s: pb.AuditRequest()),
]


def test_the_rpc_table_covers_every_rpc_of_every_service():
    listed = {(SERVICE_NAMES[rpc.service], rpc.method) for rpc in RPCS}
    served = {(service, method.name) for service in SERVICE_NAMES.values()
              for method in pb.DESCRIPTOR.services_by_name[service].methods}
    assert listed == served


def _guard_error(rpc: Rpc, stubs, subscriber_id: str):
    """The ErrorView when the guard (or anything) refused the call; None when it was served."""
    try:
        rpc.invoke(stubs, subscriber_id, timeout=1.5 if rpc.shape == "server_stream" else 10)
    except grpc.RpcError as error:
        return view_error(error)
    return None


@pytest.mark.parametrize("rpc", RPCS, ids=lambda rpc: f"{rpc.service}.{rpc.method}")
def test_every_rpc_needs_a_credential_and_its_scope(grid, subscriber_a, rpc):
    # No credential, an unknown key, a malformed authorization, a token where only garbage is.
    for metadata, says in [((), "credential is required"),
                           ((("x-api-key", "not-a-configured-key"),), "unknown API key"),
                           ((("authorization", f"Basic {secret_of('admin-a')}"),), "Bearer"),
                           ((("authorization", "Bearer not.a.jwt"),), "token")]:
        error = _guard_error(rpc, grid.stubs(metadata=metadata), subscriber_a)
        assert error is not None and error.code == grpc.StatusCode.UNAUTHENTICATED, (metadata, error)
        assert says in error.message, (metadata, error.message)
        assert error.info is not None and error.info.reason == "UNAUTHENTICATED", error
    # Every scope but the one needed: PERMISSION_DENIED, naming the method and the scope.
    error = _guard_error(rpc, grid.stubs(key=f"without-{_short(rpc.scope)}"), subscriber_a)
    assert error is not None and error.code == grpc.StatusCode.PERMISSION_DENIED, error
    assert rpc.scope in error.message and rpc.method in error.message, error.message
    assert error.info is not None and error.info.reason == "PERMISSION_DENIED", error
    # Only that scope: past the guard (served, or refused for something else than the credential).
    error = _guard_error(rpc, grid.stubs(key=f"only-{_short(rpc.scope)}"), subscriber_a)
    assert error is None or error.code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED), \
        error
    if rpc.shape == "server_stream":  # a watch that was let in waits for notifications until its deadline
        assert error is not None and error.code == grpc.StatusCode.DEADLINE_EXCEEDED, error


def _shard_channels(grid, leaf="client"):
    """shard id -> a mutual-TLS channel to its public listener (addresses from GetShardMap)."""
    shard_map = grid.stubs(key="admin-a").charging.GetShardMap(pb.GetShardMapRequest(), timeout=10)
    leaf = getattr(grid.pki, leaf) if leaf else None
    return shard_map, {shard.shard_id: tls_channel(shard.address, grid.pki.ca.cert_pem.bytes(), leaf)
                       for shard in shard_map.shards}


def test_a_shards_own_listener_has_the_front_doors_tls_credentials_and_tenants(grid, subscriber_a):
    """Direct routing opens no side door: the shard's public listener refuses what the
    front door refuses, and tenant B never reaches tenant A's subscriber there."""
    shard_map, channels = _shard_channels(grid)
    try:
        assert shard_map.tenant == TENANT_A
        owner = grid.shard_of(TENANT_A, subscriber_a)
        own = bound_stubs(channels[owner], key_metadata("admin-a"))
        assert money_of(own, subscriber_a) == money_of(grid.stubs(key="admin-a"), subscriber_a)
        for metadata in ((), (("x-api-key", "not-a-configured-key"),)):
            error = refused(bound_stubs(channels[owner], metadata).charging.GetBalance,
                            pb.GetBalanceRequest(subscriber_id=subscriber_a), timeout=10)
            assert error.code == grpc.StatusCode.UNAUTHENTICATED, error
        error = refused(bound_stubs(channels[owner], key_metadata("without-accounts")).charging.TopUp,
                        top_up_request(subscriber_a, 1), timeout=10)
        assert error.code == grpc.StatusCode.PERMISSION_DENIED, error
        # Tenant B's credential: its own (absent) subscriber of that id, never A's.
        other = bound_stubs(channels[grid.shard_of(TENANT_B, subscriber_a)], key_metadata("admin-b"))
        reply = other.charging.Reserve(reserve_request(subscriber_a, 1, SMS), timeout=10)
        assert reply.result == pb.USER_UNKNOWN, reply
    finally:
        for channel in channels.values():
            channel.close()
    # Without a client certificate (mutual TLS) the shard's listener is closed too.
    _, bare = _shard_channels(grid, leaf=None)
    try:
        error = refused(bound_stubs(bare[0], key_metadata("admin-a")).charging.GetBalance,
                        pb.GetBalanceRequest(subscriber_id=subscriber_a), timeout=10)
        assert error.code == grpc.StatusCode.UNAVAILABLE, error
    finally:
        for channel in bare.values():
            channel.close()


def test_the_internal_stream_refuses_a_caller_without_the_shards_token(grid):
    """The front doors' port of a shard takes frames only with the token handed out over Ray."""
    from grid.dataplane import frames

    endpoint = grid.embedded.grid.router.batchers[0].link.endpoint
    channel = grpc.secure_channel(endpoint["internal"], grpc.ssl_channel_credentials(endpoint["certificate_pem"]),
                                  options=[("grpc.ssl_target_name_override", frames.INTERNAL_TLS_NAME)])
    try:
        call = channel.stream_stream(frames.PATH)
        for metadata in ((), ((frames.TOKEN_HEADER, "0" * 32),)):
            with pytest.raises(grpc.RpcError) as raised:
                list(call(iter([frames.pack_frame(1, None, [])]), metadata=metadata, timeout=10))
            assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        channel.close()


def test_a_top_up_without_the_accounts_scope_changes_nothing(grid, subscriber_a):
    before = money_of(grid.stubs(key="admin-a"), subscriber_a)
    request = top_up_request(subscriber_a, 5_000_000)
    error = refused(grid.stubs(key="nf-a").charging.TopUp, request)
    assert error.code == grpc.StatusCode.PERMISSION_DENIED and ACCOUNTS in error.message, error
    assert money_of(grid.stubs(key="admin-a"), subscriber_a) == before
    found = grid.stubs(key="admin-a").charging.GetTransaction(
        pb.GetTransactionRequest(subscriber_id=subscriber_a, request_id=request.request_id))
    assert not found.found, found
    # The same request with the right key is applied once, as new.
    applied = grid.stubs(key="admin-a").charging.TopUp(request)
    assert applied.result == pb.SUCCESS and not applied.replayed and applied.balance_micros == before[0] + 5_000_000


def test_a_charge_stream_needs_the_accounts_scope_for_a_top_up(grid, subscriber_a):
    admin = grid.stubs(key="admin-a")
    before = money_of(admin, subscriber_a)
    top_up = top_up_request(subscriber_a, 1_000)
    stream = [pb.ChargeRequest(correlation_tag=1, debit=debit_request(subscriber_a, 1, rating_group=SMS)),
              pb.ChargeRequest(correlation_tag=2, top_up=top_up)]
    replies = {reply.correlation_tag: reply for reply in grid.stubs(key="nf-a").charging.Charge(iter(stream))}
    assert replies[1].debit.result == pb.SUCCESS and replies[1].debit.charged_micros == SMS_MICROS, replies[1]
    assert replies[2].WhichOneof("reply") == "error", replies[2]
    assert replies[2].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0], replies[2]
    assert ACCOUNTS in replies[2].error.message, replies[2]
    assert money_of(admin, subscriber_a) == (before[0] - SMS_MICROS, 0, before[2] - SMS_MICROS)
    # The admin key's stream may top up (the same request, applied as new).
    replies = list(admin.charging.Charge(iter([pb.ChargeRequest(correlation_tag=3, top_up=top_up)])))
    assert replies[0].top_up.result == pb.SUCCESS and not replies[0].top_up.replayed, replies
    assert replies[0].top_up.balance_micros == before[0] - SMS_MICROS + 1_000
    # A stream opened with no credential is refused as a whole.
    error = refused(grid.stubs().charging.Charge, iter(stream))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED, error


# ================================================================ 3. JWT


def test_a_valid_token_works_and_its_tenant_claim_decides_the_tenant(grid, issuer, subscriber_a):
    as_a = grid.stubs(token=issuer.token())
    assert money_of(as_a, subscriber_a) == money_of(grid.stubs(key="admin-a"), subscriber_a)
    # "scp" as a list works as well as "scope" as a string.
    as_a_scp = grid.stubs(token=issuer.token(scope=DROP, scp=[CHARGING]))
    assert money_of(as_a_scp, subscriber_a)[0] == FUNDS
    # The same token for tenant B does not find A's subscriber.
    as_b = grid.stubs(token=issuer.token(tenant=TENANT_B))
    reply = as_b.charging.GetBalance(pb.GetBalanceRequest(subscriber_id=subscriber_a))
    assert reply.result == pb.USER_UNKNOWN and reply.balance_micros == 0, reply
    # A token's top-up is A's and the admin log names the token's subject.
    applied = as_a.charging.TopUp(top_up_request(subscriber_a, 7))
    assert applied.result == pb.SUCCESS and applied.balance_micros == FUNDS + 7
    entry = [e for e in grid.admin_log() if e["target"].get("subscriber_id") == subscriber_a
             and e["target"].get("amount_micros") == 7]
    assert [(e["subject"], e["tenant"], e["outcome"]) for e in entry] == [("pcf-7", TENANT_A, "SUCCESS")]


BAD_TOKENS = {
    # name -> (issuer -> token, what the refusal says)
    "expired": (lambda i: i.token(exp=int(time.time()) - LEEWAY_S - 60), "expired"),
    "wrong-audience": (lambda i: i.token(aud="another-grid"), "audience"),
    "wrong-issuer": (lambda i: i.token(iss="https://evil.example.test/"), "issuer"),
    "wrong-signing-key": (lambda i: i.token(key=i.other_key), "token"),
    "alg-none": (lambda i: i.unsigned(), "token"),
    "hs256-keyed-with-the-public-key": (lambda i: i.hs256(i.public_pem), "token"),
    "hs256-keyed-with-a-secret": (lambda i: i.hs256(b"a-shared-secret-of-32-bytes-or-more!"), "token"),
    "no-tenant-claim": (lambda i: i.token(tenant=DROP), "tenant"),
    "empty-tenant-claim": (lambda i: i.token(tenant=""), "tenant"),
    "tenant-claim-not-a-string": (lambda i: i.token(tenant=["tenant-a"]), "tenant"),
    "no-subject": (lambda i: i.token(sub=DROP), "token"),
    "no-expiry": (lambda i: i.token(exp=DROP), "token"),
    "no-issuer": (lambda i: i.token(iss=DROP), "token"),
    "no-audience": (lambda i: i.token(aud=DROP), "token"),
    "not-yet-valid": (lambda i: i.token(nbf=int(time.time()) + 3600), "token"),
    "payload-swapped-after-signing": (
        lambda i: ".".join([i.token().split(".")[0], i.token(tenant=TENANT_B).split(".")[1],
                            i.token().split(".")[2]]), "token"),
    "scope-claim-not-a-list": (lambda i: i.token(scope={"grid:charging": True}), "scope"),
}


@pytest.mark.parametrize("bad", sorted(BAD_TOKENS))
def test_a_bad_token_is_unauthenticated(grid, issuer, subscriber_a, bad):
    make, says = BAD_TOKENS[bad]
    stubs = grid.stubs(token=make(issuer))
    error = refused(stubs.charging.GetBalance, pb.GetBalanceRequest(subscriber_id=subscriber_a))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED, error
    assert says in error.message, error.message
    assert error.info is not None and error.info.reason == "UNAUTHENTICATED"


def test_a_token_without_the_scope_is_permission_denied(grid, issuer, subscriber_a):
    token = issuer.token(scope=f"{POLICY} grid:everything")  # unknown scopes grant nothing
    error = refused(grid.stubs(token=token).charging.GetBalance, pb.GetBalanceRequest(subscriber_id=subscriber_a))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED and CHARGING in error.message, error
    token = issuer.token()  # charging and accounts, not admin
    error = refused(grid.stubs(token=token).admin.Dispute, pb.DisputeRequest(subscriber_id=subscriber_a, from_ms=1))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED and ADMIN in error.message, error
    # Scopes are the token's, whatever the tenant: an API key is not needed alongside.
    assert grid.stubs(token=issuer.token(scope=POLICY)).policy.GetCounters(
        pb.GetCountersRequest(subscriber_id=subscriber_a)).result == pb.SUCCESS


def _clear_trace_fields(message) -> None:
    """trace_id differs per call: clear it (and span ids) everywhere in a reply."""
    for field, value in message.ListFields():
        if field.name in ("trace_id", "span_id", "trace_url"):
            message.ClearField(field.name)
        elif field.type == field.TYPE_MESSAGE:
            for item in ([value] if isinstance(value, Message) else value):
                _clear_trace_fields(item)


def _outcome_text(outcome, subscriber_id: str) -> str:
    if isinstance(outcome, grpc.RpcError):
        view = view_error(outcome)
        return f"error {view.code.name}: {view.message} {view.violations} {view.info}".replace(subscriber_id, "<S>")
    replies = outcome if isinstance(outcome, list) else [outcome]
    texts = []
    for reply in replies:
        copy = type(reply)()
        copy.CopyFrom(reply)
        _clear_trace_fields(copy)
        texts.append(text_format.MessageToString(copy))
    return "\n".join(texts).replace(subscriber_id, "<S>")


def _attempt(call, subscriber_id: str) -> str:
    try:
        outcome = call(subscriber_id)
    except grpc.RpcError as error:
        outcome = error
    return _outcome_text(outcome, subscriber_id)


@dataclasses.dataclass
class AccountOfA:
    subscriber_id: str
    top_up_request_id: str
    hold: pb.ReserveResponse
    debit_request_id: str
    charge: pb.DebitResponse
    session_id: str


def account_of_a_with_history(grid: SecureGrid, plan_id: str) -> AccountOfA:
    """A's subscriber (on a shard it shares with B's account of the same id) with a
    top-up, a live hold, a charge and an open session."""
    admin = grid.stubs(key="admin-a")
    subscriber_id = grid.same_shard_id("x-")
    open_account(admin, plan_id, funds=0, subscriber_id=subscriber_id)
    top_up_id = new_id("top-")
    assert admin.charging.TopUp(top_up_request(subscriber_id, FUNDS, request_id=top_up_id)).result == pb.SUCCESS
    hold = admin.charging.Reserve(reserve_request(subscriber_id, 60, VOICE))
    assert hold.result == pb.SUCCESS, hold
    debit_id = new_id("dbt-")
    charge = admin.charging.Debit(debit_request(subscriber_id, 1, rating_group=SMS, request_id=debit_id))
    assert charge.result == pb.SUCCESS, charge
    session_id = new_id("session-")
    opened = admin.charging.CreateSession(pb.CreateSessionRequest(
        session_id=session_id, subscriber_id=subscriber_id, invocation_sequence_number=1,
        multiple_unit_usage=[pb.MultipleUnitUsage(rating_group=VOICE, requested_units=30)]))
    assert opened.result == pb.SUCCESS, opened
    return AccountOfA(subscriber_id, top_up_id, hold, debit_id, charge, session_id)


def view_of_a(grid: SecureGrid, account: AccountOfA) -> list[str]:
    """Everything A can see of its account: balance, holds, session, journal, transactions."""
    admin = grid.stubs(key="admin-a")
    s = account.subscriber_id
    replies = [
        admin.charging.GetBalance(pb.GetBalanceRequest(subscriber_id=s)),
        admin.account.GetAccount(pb.GetAccountRequest(subscriber_id=s)),
        admin.charging.GetSession(pb.GetSessionRequest(subscriber_id=s, session_id=account.session_id)),
        admin.admin.Dispute(pb.DisputeRequest(subscriber_id=s, from_ms=1)),
        admin.policy.GetCounters(pb.GetCountersRequest(subscriber_id=s)),
        admin.account.GetBillingCycle(pb.GetBillingCycleRequest(subscriber_id=s)),
    ]
    for request_id in (account.top_up_request_id, account.debit_request_id):
        replies.append(admin.charging.GetTransaction(pb.GetTransactionRequest(subscriber_id=s, request_id=request_id)))
    return [text_format.MessageToString(reply) for reply in replies]


def test_tenant_b_sees_a_subscriber_of_tenant_a_as_one_that_exists_nowhere(grid, plan_a):
    a = account_of_a_with_history(grid, plan_a)
    ghost = new_id("ghost-")
    before = view_of_a(grid, a)
    b = grid.stubs(key="admin-b")
    x = a.subscriber_id
    hold_id, charge_id, session_id = a.hold.reservation_id, a.charge.charge_id, a.session_id
    # Reads first (a refused write of B is journaled in B's name and would show in B's dispute).
    reads = {
        "GetBalance": lambda s: b.charging.GetBalance(pb.GetBalanceRequest(subscriber_id=s)),
        "GetAccount": lambda s: b.account.GetAccount(pb.GetAccountRequest(subscriber_id=s)),
        "GetTransaction(top-up)": lambda s: b.charging.GetTransaction(
            pb.GetTransactionRequest(subscriber_id=s, request_id=a.top_up_request_id)),
        "GetTransaction(debit)": lambda s: b.charging.GetTransaction(
            pb.GetTransactionRequest(subscriber_id=s, request_id=a.debit_request_id)),
        "GetTransaction(session)": lambda s: b.charging.GetTransaction(
            pb.GetTransactionRequest(subscriber_id=s, request_id=f"session/{session_id}/1")),
        "GetSession": lambda s: b.charging.GetSession(pb.GetSessionRequest(subscriber_id=s, session_id=session_id)),
        "GetCounters": lambda s: b.policy.GetCounters(pb.GetCountersRequest(subscriber_id=s)),
        "GetBillingCycle": lambda s: b.account.GetBillingCycle(pb.GetBillingCycleRequest(subscriber_id=s)),
        "Dispute(window)": lambda s: b.admin.Dispute(pb.DisputeRequest(subscriber_id=s, from_ms=1)),
        "Dispute(request)": lambda s: b.admin.Dispute(pb.DisputeRequest(subscriber_id=s,
                                                                         request_id=a.debit_request_id)),
        "Dispute(charge)": lambda s: b.admin.Dispute(pb.DisputeRequest(subscriber_id=s, charge_id=charge_id)),
    }
    request_ids = {name: new_id(f"b-{name}-") for name in (
        "reserve", "debit", "debit-hold", "release", "refund", "top-up", "state", "subscribe", "unsubscribe")}
    writes = {
        "Reserve": lambda s: b.charging.Reserve(reserve_request(s, 10, VOICE, session_id=session_id,
                                                                request_id=request_ids["reserve"])),
        "Debit(direct)": lambda s: b.charging.Debit(debit_request(s, 1, rating_group=SMS,
                                                                  request_id=request_ids["debit"])),
        "Debit(A's hold)": lambda s: b.charging.Debit(debit_request(s, 1, reservation_id=hold_id,
                                                                    request_id=request_ids["debit-hold"])),
        "Release(A's hold)": lambda s: b.charging.Release(release_request(s, hold_id,
                                                                          request_id=request_ids["release"])),
        "Refund(A's charge)": lambda s: b.charging.Refund(refund_request(s, charge_id, 1,
                                                                         request_id=request_ids["refund"])),
        "CreateSession": lambda s: b.charging.CreateSession(pb.CreateSessionRequest(
            session_id=session_id, subscriber_id=s, invocation_sequence_number=1,
            multiple_unit_usage=[pb.MultipleUnitUsage(rating_group=VOICE, requested_units=10)])),
        "UpdateSession": lambda s: b.charging.UpdateSession(pb.UpdateSessionRequest(
            session_id=session_id, subscriber_id=s, invocation_sequence_number=2,
            multiple_unit_usage=[pb.MultipleUnitUsage(rating_group=VOICE, used_units=10, requested_units=10)])),
        "ReleaseSession": lambda s: b.charging.ReleaseSession(pb.ReleaseSessionRequest(
            session_id=session_id, subscriber_id=s, invocation_sequence_number=3,
            multiple_unit_usage=[pb.MultipleUnitUsage(rating_group=VOICE, used_units=5)])),
        "TopUp": lambda s: b.charging.TopUp(top_up_request(s, 1_000_000, request_id=request_ids["top-up"])),
        "SetAccountState": lambda s: b.account.SetAccountState(set_state_request(s, pb.CLOSED,
                                                                                 request_id=request_ids["state"])),
        "Subscribe": lambda s: b.policy.Subscribe(pb.SubscribeRequest(
            request_id=request_ids["subscribe"], subscriber_id=s, client_id="pcf-b")),
        "Unsubscribe": lambda s: b.policy.Unsubscribe(pb.UnsubscribeRequest(
            request_id=request_ids["unsubscribe"], subscriber_id=s, client_id="pcf-b")),
        "Charge stream": lambda s: list(b.charging.Charge(iter([
            pb.ChargeRequest(correlation_tag=1, release=release_request(s, hold_id, request_id=new_id("rel-"))),
        ]))),
    }
    differences = {}
    for name, call in {**reads, **writes}.items():
        on_x, on_ghost = _attempt(call, x), _attempt(call, ghost)
        if on_x != on_ghost:
            differences[name] = (on_x, on_ghost)
    assert differences == {}, "\n".join(f"{name}:\n  A's subscriber: {x_}\n  nobody's:       {g}"
                                        for name, (x_, g) in differences.items())
    # The comparison is not vacuous: these are refusals of a subscriber B does not have.
    assert "USER_UNKNOWN" in _attempt(reads["GetBalance"], x)
    assert "USER_UNKNOWN" in _attempt(writes["Debit(direct)"], x)
    # A's balance, holds, session, journal and transactions did not move.
    assert view_of_a(grid, a) == before
    a_stubs = grid.stubs(key="admin-a")
    for request_id in request_ids.values():
        reply = a_stubs.charging.GetTransaction(pb.GetTransactionRequest(subscriber_id=x, request_id=request_id))
        assert not reply.found, (request_id, reply)


# ================================================================ 4. Tenant isolation


def test_the_same_subscriber_id_in_two_tenants_is_two_accounts(grid, plan_a):
    a, b = grid.stubs(key="admin-a"), grid.stubs(key="admin-b")
    plan_b = put_plan(b)
    x = grid.same_shard_id()
    open_account(a, plan_a, funds=1_000_000, subscriber_id=x)
    open_account(b, plan_b, funds=2_000_000, subscriber_id=x)
    assert money_of(a, x) == (1_000_000, 0, 1_000_000)
    assert money_of(b, x) == (2_000_000, 0, 2_000_000)
    assert a.account.GetAccount(pb.GetAccountRequest(subscriber_id=x)).account.tariff_plan_id == plan_a
    assert b.account.GetAccount(pb.GetAccountRequest(subscriber_id=x)).account.tariff_plan_id == plan_b
    # A second CreateAccount in either tenant finds that tenant's own account.
    again = b.account.CreateAccount(create_account_request(x, plan_b))
    assert again.result == pb.ACCOUNT_ALREADY_EXISTS, again
    # A debit in B moves B's money only.
    assert b.charging.Debit(debit_request(x, 1, rating_group=SMS)).result == pb.SUCCESS
    assert money_of(a, x) == (1_000_000, 0, 1_000_000)
    assert money_of(b, x)[0] == 2_000_000 - SMS_MICROS


def test_the_same_request_id_in_two_tenants_is_two_idempotency_records(grid, plan_a):
    a, b = grid.stubs(key="admin-a"), grid.stubs(key="admin-b")
    plan_b = put_plan(b)
    x = grid.same_shard_id()
    open_account(a, plan_a, funds=0, subscriber_id=x)
    open_account(b, plan_b, funds=0, subscriber_id=x)
    request_id = new_id("shared-")
    first_a = a.charging.TopUp(top_up_request(x, 111, request_id=request_id))
    first_b = b.charging.TopUp(top_up_request(x, 222, request_id=request_id))  # not REQUEST_ID_REUSED
    assert (first_a.result, first_a.balance_micros, first_a.replayed) == (pb.SUCCESS, 111, False)
    assert (first_b.result, first_b.balance_micros, first_b.replayed) == (pb.SUCCESS, 222, False)
    again_a = a.charging.TopUp(top_up_request(x, 111, request_id=request_id))
    again_b = b.charging.TopUp(top_up_request(x, 222, request_id=request_id))
    assert (again_a.balance_micros, again_a.replayed) == (111, True)
    assert (again_b.balance_micros, again_b.replayed) == (222, True)
    found_a = a.charging.GetTransaction(pb.GetTransactionRequest(subscriber_id=x, request_id=request_id))
    found_b = b.charging.GetTransaction(pb.GetTransactionRequest(subscriber_id=x, request_id=request_id))
    assert found_a.top_up.balance_micros == 111 and found_b.top_up.balance_micros == 222
    # The other payload under the same id: reused within the tenant, whichever tenant.
    error = refused(a.charging.TopUp, top_up_request(x, 222, request_id=request_id))
    assert error.code == grpc.StatusCode.ALREADY_EXISTS, error
    assert money_of(a, x)[0] == 111 and money_of(b, x)[0] == 222


def _rates(sms_price_micros: int) -> list[pb.RatingGroupRate]:
    return [pb.RatingGroupRate(rating_group=SMS, unit=pb.EVENTS, price_micros=sms_price_micros, rate_units=1,
                               increment_units=1)]


def test_tariff_plans_are_per_tenant(grid):
    a, b = grid.stubs(key="admin-a"), grid.stubs(key="admin-b")
    put_a = a.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id="basic", rates=_rates(1_000)))
    put_b = b.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id="basic", rates=_rates(7_000)))
    assert (put_a.result, put_a.version) == (pb.SUCCESS, 1) and (put_b.result, put_b.version) == (pb.SUCCESS, 1)
    assert a.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id="basic")).plan.rates[0].price_micros == 1_000
    assert b.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id="basic")).plan.rates[0].price_micros == 7_000
    x = grid.same_shard_id()
    open_account(a, "basic", subscriber_id=x)
    open_account(b, "basic", subscriber_id=x)
    charged_a = a.charging.Debit(debit_request(x, 1, rating_group=SMS))
    charged_b = b.charging.Debit(debit_request(x, 1, rating_group=SMS))
    assert (charged_a.result, charged_a.charged_micros) == (pb.SUCCESS, 1_000)
    assert (charged_b.result, charged_b.charged_micros) == (pb.SUCCESS, 7_000)
    # A plan only A has: B cannot see it, nor open an account on it.
    only_a = new_id("only-a-")
    assert a.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=only_a, rates=_rates(5))).result == pb.SUCCESS
    assert b.catalog.GetTariff(pb.GetTariffRequest(tariff_plan_id=only_a)).result == pb.TARIFF_PLAN_UNKNOWN
    y = grid.same_shard_id()
    created_b = b.account.CreateAccount(create_account_request(y, only_a))
    assert created_b.result == pb.TARIFF_PLAN_UNKNOWN, created_b
    assert b.account.GetAccount(pb.GetAccountRequest(subscriber_id=y)).result == pb.USER_UNKNOWN
    assert a.account.CreateAccount(create_account_request(y, only_a)).result == pb.SUCCESS


def test_holds_charges_and_sessions_of_another_tenant_are_not_found(grid, plan_a):
    a_account = account_of_a_with_history(grid, plan_a)
    x = a_account.subscriber_id
    before = view_of_a(grid, a_account)
    b = grid.stubs(key="admin-b")
    open_account(b, put_plan(b), subscriber_id=x)  # B's own account of the same id, on the same shard
    assert grid.shard_of(TENANT_A, x) == grid.shard_of(TENANT_B, x)
    hold_id, charge_id = a_account.hold.reservation_id, a_account.charge.charge_id
    assert list(b.admin.Dispute(pb.DisputeRequest(subscriber_id=x, charge_id=charge_id)).events) == []
    b_requests = [debit_request(x, 1, reservation_id=hold_id), release_request(x, hold_id),
                  refund_request(x, charge_id, 1)]
    assert b.charging.Debit(b_requests[0]).result == pb.RESERVATION_NOT_FOUND
    assert b.charging.Release(b_requests[1]).result == pb.RESERVATION_NOT_FOUND
    assert b.charging.Refund(b_requests[2]).result == pb.CHARGE_NOT_FOUND
    session = b.charging.GetSession(pb.GetSessionRequest(subscriber_id=x, session_id=a_account.session_id))
    assert session.result == pb.SESSION_NOT_FOUND, session
    # B's dispute of that charge id now finds B's own refused refund, nothing of A's.
    disputed = b.admin.Dispute(pb.DisputeRequest(subscriber_id=x, charge_id=charge_id))
    assert [(e.request_id, e.result) for e in disputed.events] == [(b_requests[2].request_id, pb.CHARGE_NOT_FOUND)]
    # B opening a session of the same id opens B's own; releasing it returns B's hold only.
    opened = b.charging.CreateSession(pb.CreateSessionRequest(
        session_id=a_account.session_id, subscriber_id=x, invocation_sequence_number=1,
        multiple_unit_usage=[pb.MultipleUnitUsage(rating_group=VOICE, requested_units=10)]))
    assert opened.result == pb.SUCCESS and not opened.replayed, opened
    released = b.charging.ReleaseSession(pb.ReleaseSessionRequest(
        session_id=a_account.session_id, subscriber_id=x, invocation_sequence_number=2))
    assert released.result == pb.SUCCESS, released
    assert money_of(b, x) == (FUNDS, 0, FUNDS)
    assert view_of_a(grid, a_account) == before


def _export_all(stubs) -> list[pb.Cdr]:
    cdrs, cursor = [], ""
    for _ in range(100):
        page = stubs.admin.ExportCdrs(pb.ExportCdrsRequest(cursor=cursor))
        cdrs.extend(page.cdrs)
        cursor = page.next_cursor
        if not page.more:
            return cdrs
    raise AssertionError("more than 100 pages of CDRs")


def test_cdr_export_is_the_callers_tenant_unless_operator(grid, plan_a):
    a, b = grid.stubs(key="admin-a"), grid.stubs(key="admin-b")
    x = grid.same_shard_id()
    open_account(a, plan_a, subscriber_id=x)
    open_account(b, put_plan(b), subscriber_id=x)
    charge_a = a.charging.Debit(debit_request(x, 1, rating_group=SMS)).charge_id
    charge_b = b.charging.Debit(debit_request(x, 2, rating_group=SMS)).charge_id
    of_a, of_b, of_all = _export_all(a), _export_all(b), _export_all(grid.stubs(key="operator"))
    assert of_a and {cdr.tenant for cdr in of_a} == {TENANT_A}
    assert of_b and {cdr.tenant for cdr in of_b} == {TENANT_B}
    assert charge_a in {c.charge_id for c in of_a} and charge_a not in {c.charge_id for c in of_b}
    assert charge_b in {c.charge_id for c in of_b} and charge_b not in {c.charge_id for c in of_a}
    # The operator's export is both tenants' (and nothing else: no other tenant charged here).
    by_id = {cdr.cdr_id: cdr for cdr in of_all}
    assert {cdr.cdr_id for cdr in of_a} | {cdr.cdr_id for cdr in of_b} <= set(by_id)
    assert {cdr.tenant for cdr in of_all} == {TENANT_A, TENANT_B}
    mine = [(cdr.tenant, cdr.amount_micros) for cdr in of_all if cdr.charge_id in (charge_a, charge_b)]
    assert sorted(mine) == [(TENANT_A, SMS_MICROS), (TENANT_B, 2 * SMS_MICROS)]


class Watcher:
    """One WatchNotifications stream, read by a thread into a queue."""

    def __init__(self, stubs, client_id: str) -> None:
        self.received: queue.Queue = queue.Queue()
        self.call = stubs.charging.WatchNotifications(pb.WatchNotificationsRequest(client_id=client_id), timeout=60)
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            for notification in self.call:
                self.received.put(notification)
        except grpc.RpcError as error:
            self.received.put(error)

    def within(self, seconds: float) -> list:
        """Everything that arrives in the next seconds."""
        got, until = [], time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            try:
                item = self.received.get(timeout=left)
            except queue.Empty:
                break
            if isinstance(item, grpc.RpcError) and item.code() != grpc.StatusCode.CANCELLED:
                raise AssertionError(f"the watch ended: {item.code()} {item.details()}")
            got.append(item)
        return got

    def until(self, predicate, timeout_s: float = 10) -> list:
        got, until = [], time.monotonic() + timeout_s
        while not any(predicate(n) for n in got):
            left = until - time.monotonic()
            assert left > 0, f"nothing matching arrived: {got}"
            try:
                item = self.received.get(timeout=left)
            except queue.Empty:
                raise AssertionError(f"nothing matching arrived: {got}") from None
            assert not isinstance(item, grpc.RpcError), item
            got.append(item)
        return got

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(timeout=10)


def test_notifications_of_a_client_id_stay_in_their_tenant(grid):
    """Tenants A and B each have a network function called smf-1, a plan called
    "notify" and a session on it; a tariff change in A re-authorises A's session only,
    and only A's smf-1 hears of it."""
    a, b = grid.stubs(key="admin-a"), grid.stubs(key="admin-b")
    plan = new_id("notify-")
    sessions = {}
    x = grid.same_shard_id()
    for tenant, stubs in ((TENANT_A, a), (TENANT_B, b)):
        assert stubs.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan, rates=RATES)).result == pb.SUCCESS
        open_account(stubs, plan, subscriber_id=x)
        sessions[tenant] = new_id(f"{tenant}-session-")
        opened = stubs.charging.CreateSession(pb.CreateSessionRequest(
            session_id=sessions[tenant], subscriber_id=x, invocation_sequence_number=1, notify_client_id="smf-1",
            multiple_unit_usage=[pb.MultipleUnitUsage(rating_group=VOICE, requested_units=30)]))
        assert opened.result == pb.SUCCESS, opened
    watch_a, watch_b = Watcher(grid.stubs(key="nf-a"), "smf-1"), Watcher(grid.stubs(key="nf-b"), "smf-1")
    try:
        changed = [pb.RatingGroupRate(rating_group=VOICE, unit=pb.SECONDS, price_micros=120_000, rate_units=60,
                                      increment_units=1)]
        assert a.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan, rates=changed)).version == 2
        heard_a = watch_a.until(lambda n: n.session_id == sessions[TENANT_A])
        assert [(n.session_id, n.reason) for n in heard_a] == [(sessions[TENANT_A], pb.TARIFF_CHANGED)]
        assert watch_b.within(1.0) == []  # five poll intervals: A's notification does not reach B's smf-1
        assert b.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan, rates=changed)).version == 2
        heard_b = watch_b.until(lambda n: n.session_id == sessions[TENANT_B])
        assert [(n.session_id, n.subscriber_id, n.reason) for n in heard_b] == [
            (sessions[TENANT_B], x, pb.TARIFF_CHANGED)]
        assert watch_a.within(1.0) == [] and watch_b.within(0.1) == []
    finally:
        watch_a.close()
        watch_b.close()


# ================================================================ 5. Rate limits


SUBSCRIBER_RATE = security.RateLimit(2, 2)  # 2 a second, bursts of 2: a token every 0.5 s
TIGHT_PER_S = 1  # tenant "tight": 1 a second, bursts of 3 (the auth file's tenants section)


@pytest.fixture(scope="module")
def limited(embedded, tmp_path_factory):
    """A 1-shard plaintext grid limiting every subscriber to SUBSCRIBER_RATE and tenant
    "tight" to TIGHT_PER_S; tenant "roomy" has no tenant limit."""
    auth = security.parse_auth({
        "api_keys": [{"name": f"admin-{tenant}", "tenant": tenant, "key_sha256": security.hash_key(f"key-{tenant}"),
                      "scopes": sorted(ALL_SCOPES - {OPERATOR})} for tenant in ("roomy", "tight")],
        "tenants": {"tight": {"requests_per_s": TIGHT_PER_S, "burst": 3}},
    })
    serving = ServingGrid(tmp_path_factory.mktemp("grid-e2e-rates"), shards=1, auth=auth,
                          subscriber_rate=SUBSCRIBER_RATE)
    try:
        yield serving
    finally:
        serving.stop()


def limited_stubs(limited, tenant: str):
    return bound_stubs(limited.channel, (("x-api-key", f"key-{tenant}"),))


def funded(limited, tenant: str) -> str:
    """An account of tenant with FUNDS, made by the real client (which waits out the
    limits as RetryInfo says), then a pause for its subscriber's bucket to fill."""
    subscriber_id = new_id("sub-")
    with ChargingClient(limited.target, retry=RetryPolicy(attempts=10),
                        credentials=Credentials(api_key=f"key-{tenant}")) as client:
        plan = new_id("plan-")
        client.put_tariff(plan, [dict(rating_group=SMS, unit=pb.EVENTS, price_micros=SMS_MICROS, rate_units=1,
                                      increment_units=1)])
        assert client.create_account(subscriber_id, "EUR", plan).result == pb.SUCCESS
        assert client.top_up(subscriber_id, FUNDS).result == pb.SUCCESS
    return subscriber_id


def _rate_limited(error: grpc.RpcError, which: str) -> float:
    """Checks a rate limit's status; returns its retry delay in seconds."""
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (error.code(), error.details())
    details = status_details(error)
    info = details["ErrorInfo"]
    assert info.reason == "OVERLOADED", info
    assert info.metadata["field"] == ("subscriber_id" if which == "subscriber" else "tenant"), info
    assert [v.subject for v in details["QuotaFailure"].violations] == [which], details["QuotaFailure"]
    delay_s = details["RetryInfo"].retry_delay.ToNanoseconds() / 1e9
    assert 0 < delay_s <= 1.0 / (SUBSCRIBER_RATE.per_s if which == "subscriber" else TIGHT_PER_S) + 0.002, delay_s
    assert which in error.details(), error.details()
    return delay_s


def _drain(call, count_max: int = 20) -> grpc.RpcError:
    """Calls until one is rate limited, then waits its delay and makes one more (admitted): the
    bucket is now empty for a whole token's time, so the next call is refused for sure."""
    for _ in range(count_max):
        try:
            call()
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
            time.sleep(status_details(error)["RetryInfo"].retry_delay.ToNanoseconds() / 1e9)
            call()
            return error
    raise AssertionError(f"{count_max} calls and no rate limit")


def test_a_subscriber_over_its_rate_is_refused_and_nothing_happens(limited):
    s1, s2 = funded(limited, "roomy"), funded(limited, "roomy")
    time.sleep(1.0 / SUBSCRIBER_RATE.per_s * SUBSCRIBER_RATE.burst)  # both buckets full again
    stubs = limited_stubs(limited, "roomy")
    balance = lambda s: stubs.charging.GetBalance(pb.GetBalanceRequest(subscriber_id=s), timeout=10)  # noqa: E731
    _drain(lambda: balance(s1))
    refused_debit = debit_request(s1, 1, rating_group=SMS)
    delay_s = _rate_limited(rpc_error(stubs.charging.Debit, refused_debit), "subscriber")
    # Another subscriber of the tenant is admitted meanwhile, and charged.
    assert stubs.charging.Debit(debit_request(s2, 1, rating_group=SMS)).charged_micros == SMS_MICROS
    time.sleep(delay_s)
    assert balance(s1).balance_micros == FUNDS  # the refused debit took nothing
    time.sleep(1.0 / SUBSCRIBER_RATE.per_s)
    retried = stubs.charging.Debit(refused_debit)  # the same request after the delay: applied, as new
    assert (retried.result, retried.charged_micros, retried.replayed) == (pb.SUCCESS, SMS_MICROS, False)
    # The blocking client with one attempt reports the limit as Overloaded.
    with ChargingClient(limited.target, retry=RetryPolicy(attempts=1),
                        credentials=Credentials(api_key="key-roomy")) as client:
        with pytest.raises(Overloaded):
            for _ in range(10):
                client.balance(s1)


def test_a_tenant_over_its_rate_is_refused_and_other_tenants_are_not(limited):
    t1 = funded(limited, "tight")
    other = funded(limited, "roomy")
    time.sleep(1.0 / SUBSCRIBER_RATE.per_s * SUBSCRIBER_RATE.burst)
    tight, roomy = limited_stubs(limited, "tight"), limited_stubs(limited, "roomy")
    # Different subscribers each time (none of them hits its own limit): the tenant's limit.
    first = _drain(lambda: tight.charging.GetBalance(pb.GetBalanceRequest(subscriber_id=new_id("nobody-"))))
    _rate_limited(first, "tenant")
    refused_top_up = top_up_request(t1, 5_000)
    delay_s = _rate_limited(rpc_error(tight.charging.TopUp, refused_top_up), "tenant")
    # Tenant roomy is admitted meanwhile.
    assert roomy.charging.TopUp(top_up_request(other, 1)).balance_micros == FUNDS + 1
    time.sleep(delay_s)
    retried = tight.charging.TopUp(refused_top_up)  # applied now, as new: the refused one did nothing
    assert (retried.result, retried.balance_micros, retried.replayed) == (pb.SUCCESS, FUNDS + 5_000, False)


# ================================================================ 6. The admin audit log


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_admin_calls_are_logged_with_who_what_outcome_and_trace(grid):
    admin, operator, nf = grid.stubs(key="admin-a"), grid.stubs(key="operator"), grid.stubs(key="nf-a")
    started_ms = now_ms()
    plan, subscriber = new_id("plan-"), new_id("sub-")
    assert admin.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan, rates=RATES)).result == pb.SUCCESS
    assert admin.account.CreateAccount(create_account_request(subscriber, plan)).result == pb.SUCCESS
    top_up = top_up_request(subscriber, 2_000_000)
    traceparent = (("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"),)
    assert admin.charging.TopUp(top_up, extra_metadata=traceparent).result == pb.SUCCESS
    # Charging calls are not admin calls.
    hold = nf.charging.Reserve(reserve_request(subscriber, 10, VOICE))
    assert nf.charging.Debit(debit_request(subscriber, 5, reservation_id=hold.reservation_id)).result == pb.SUCCESS
    assert nf.charging.Debit(debit_request(subscriber, 1, rating_group=SMS)).result == pb.SUCCESS
    assert admin.account.SetAccountState(set_state_request(subscriber, pb.SUSPENDED)).result == pb.SUCCESS
    snapshot = operator.admin.CreateSnapshot(pb.CreateSnapshotRequest(label="audit-log test"))
    error = refused(admin.admin.CreateSnapshot, pb.CreateSnapshotRequest(label="not allowed"))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    error = refused(grid.stubs().charging.TopUp, top_up_request(subscriber, 1))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert admin.admin.Dispute(pb.DisputeRequest(subscriber_id=subscriber, from_ms=1)).events
    admin.admin.ExportCdrs(pb.ExportCdrsRequest(limit=1))
    finished_ms = now_ms()

    logged = [entry for entry in grid.admin_log() if started_ms <= entry["at_ms"] <= finished_ms]
    expected = [
        ("charging.v1.CatalogService/PutTariff", "admin-a", TENANT_A, "SUCCESS", {"tariff_plan_id": plan}),
        ("charging.v1.AccountService/CreateAccount", "admin-a", TENANT_A, "SUCCESS", {"subscriber_id": subscriber}),
        ("charging.v1.ChargingService/TopUp", "admin-a", TENANT_A, "SUCCESS",
         {"subscriber_id": subscriber, "request_id": top_up.request_id, "amount_micros": 2_000_000}),
        ("charging.v1.AccountService/SetAccountState", "admin-a", TENANT_A, "SUCCESS",
         {"subscriber_id": subscriber, "state": pb.SUSPENDED}),
        ("charging.v1.AdminService/CreateSnapshot", "operator", TENANT_OPS, "OK", {"label": "audit-log test"}),
        ("charging.v1.AdminService/CreateSnapshot", "admin-a", TENANT_A, "PERMISSION_DENIED", {"label": "not allowed"}),
        ("charging.v1.ChargingService/TopUp", "unauthenticated", "", "UNAUTHENTICATED",
         {"subscriber_id": subscriber, "amount_micros": 1}),
        ("charging.v1.AdminService/Dispute", "admin-a", TENANT_A, "OK", {"subscriber_id": subscriber}),
        ("charging.v1.AdminService/ExportCdrs", "admin-a", TENANT_A, "OK", {"limit": 1}),
    ]
    assert len(logged) == len(expected), json.dumps(logged, indent=1)
    for entry, (method, subject, tenant, outcome, target) in zip(logged, expected):
        assert set(entry) == {"at_ms", "tenant", "subject", "method", "target", "outcome", "trace_id", "peer"}, entry
        assert (entry["method"], entry["subject"], entry["tenant"], entry["outcome"]) == (
            method, subject, tenant, outcome), entry
        assert {k: entry["target"][k] for k in target} == target, entry
        assert entry["peer"].startswith(("ipv4:127.0.0.1:", "ipv6:[::1]:")), entry
        refused_call = outcome in ("PERMISSION_DENIED", "UNAUTHENTICATED")
        if refused_call:
            assert entry["trace_id"] == "", entry
        else:
            assert len(entry["trace_id"]) == 32 and int(entry["trace_id"], 16), entry
    assert [e["at_ms"] for e in logged] == sorted(e["at_ms"] for e in logged)
    assert logged[2]["trace_id"] == TRACE_ID  # the caller's traceparent is the logged trace
    assert len({e["trace_id"] for e in logged if e["trace_id"]}) == 7
    assert snapshot.snapshot_id
    # Nothing of the charging calls.
    assert not [e for e in logged if e["method"].split("/")[1] in ("Reserve", "Debit")]
    assert not any("Reserve" in e["method"] or "Debit" in e["method"] for e in grid.admin_log())


def test_a_refused_charge_stream_top_up_is_logged(grid, subscriber_a):
    started_ms = now_ms()
    top_up = top_up_request(subscriber_a, 1_234)
    replies = list(grid.stubs(key="nf-a").charging.Charge(iter([pb.ChargeRequest(correlation_tag=1, top_up=top_up)])))
    assert replies[0].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0], replies
    logged = [(e["method"], e["subject"], e["outcome"]) for e in grid.admin_log()
              if e["at_ms"] >= started_ms and e["target"].get("request_id") == top_up.request_id]
    assert logged == [("charging.v1.ChargingService/Charge.top_up", "nf-a", "PERMISSION_DENIED")]


def test_an_allowed_charge_stream_top_up_is_logged(grid, subscriber_a):
    started_ms = now_ms()
    top_up = top_up_request(subscriber_a, 4_321)
    replies = list(grid.stubs(key="admin-a").charging.Charge(
        iter([pb.ChargeRequest(correlation_tag=1, top_up=top_up)])))
    assert replies[0].top_up.result == pb.SUCCESS, replies
    logged = [(e["method"], e["subject"], e["tenant"], e["outcome"], len(e["trace_id"])) for e in grid.admin_log()
              if e["at_ms"] >= started_ms and e["target"].get("request_id") == top_up.request_id]
    assert logged == [("charging.v1.ChargingService/Charge.top_up", "admin-a", TENANT_A, "SUCCESS", 32)]


# ================================================================ 7. Listener rules


def test_a_grid_refuses_an_open_listener_before_starting_anything(tmp_path, pki):
    cases = [
        (dict(), "TLS is required"),
        (dict(host="0.0.0.0", plaintext=True), "--plaintext-any-host"),
        (dict(host="0.0.0.0", plaintext=True, plaintext_any_host=True), "--anonymous-any-host"),
        (dict(host="0.0.0.0", tls=pki.tls_files), "--anonymous-any-host"),
        (dict(plaintext=True, tls=pki.tls_files), "not both"),
        (dict(tls=security.TlsFiles(tmp_path / "missing-cert.pem", tmp_path / "missing-key.pem")),
         "missing-cert.pem"),
    ]
    for index, (fields, says) in enumerate(cases):
        data_dir = tmp_path / f"data-{index}"
        grid = Grid(GridConfig(data_dir=data_dir, port=0, **fields))
        loop = asyncio.new_event_loop()
        try:
            with pytest.raises(security.ConfigError) as raised:
                loop.run_until_complete(grid.start())
        finally:
            loop.close()
        assert says in str(raised.value), (fields, str(raised.value))
        assert not data_dir.exists(), fields  # refused before anything was made


def _serve(*arguments: str, data_dir: pathlib.Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "grid.cli", "serve", "--data-dir", str(data_dir), "--port", "0",
                             *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_grid_serve_refuses_an_open_listener_with_exit_code_2(tmp_path, pki):
    (tmp_path / "bad-scope.yaml").write_text("api_keys:\n  - {name: x, tenant: t, key_sha256: '" + "0" * 64
                                             + "', scopes: [grid:everything]}\n")
    cases = {
        "no-tls-no-plaintext": ((), "--plaintext"),
        "plaintext-on-any-host": (("--host", "0.0.0.0", "--plaintext"), "--plaintext-any-host"),
        "anonymous-on-any-host": (("--host", "0.0.0.0", "--plaintext", "--plaintext-any-host"),
                                  "--anonymous-any-host"),
        "tls-cert-without-key": (("--tls-cert", str(pki.directory / "server-cert.pem")), "--tls-key"),
        "tls-and-plaintext": (("--plaintext", "--tls-cert", str(pki.directory / "server-cert.pem"),
                               "--tls-key", str(pki.directory / "server-key.pem")), "not both"),
        "missing-auth-file": (("--plaintext", "--auth-file", str(tmp_path / "nowhere.yaml")), "nowhere.yaml"),
        "unknown-scope-in-auth-file": (("--plaintext", "--auth-file", str(tmp_path / "bad-scope.yaml")),
                                       "api_keys[0]: scopes"),
    }
    started = {name: _serve(*arguments, data_dir=tmp_path / name) for name, (arguments, _) in cases.items()}
    for name, process in started.items():
        try:
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        says = cases[name][1]
        assert process.returncode == 2, (name, process.returncode, stderr[-2000:])
        assert says in stderr and "Traceback" not in stderr, (name, stderr[-2000:])
        assert "listening" not in stdout, (name, stdout)
        assert not (tmp_path / name).exists(), name


def test_grid_serve_names_a_malformed_auth_file_and_exits_2(tmp_path):
    (tmp_path / "auth.json").write_text('{"api_keys": [')
    process = _serve("--plaintext", "--auth-file", str(tmp_path / "auth.json"), data_dir=tmp_path / "data")
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2 and "auth.json" in stderr and "Traceback" not in stderr, stderr[-2000:]
