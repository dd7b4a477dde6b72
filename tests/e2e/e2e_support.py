"""Helpers shared by the end-to-end tests: the test tariff, money snapshots and
the reading of gRPC error details (google.rpc BadRequest / ErrorInfo).

Named e2e_support (not helpers) so that it cannot collide with another test
directory's module of the same name under pytest's default import mode.
"""

import dataclasses
import types
import uuid

import grpc
from charging.v1 import charging_pb2 as pb
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

# Rating groups of the test plan.
VOICE = 1  # SECONDS: 60_000 micros a minute, per second -> 1_000 micros a second
DATA = 2  # BYTES: 1_000 micros a MB, per started KB -> 1 micro a KB
SMS = 3  # EVENTS: 100_000 micros each
ODD = 4  # SECONDS: 1 micro per 3 s, per second -> rounding residue on most usages
PRICEY = 9  # EVENTS: 10^9 micros each -> a large usage costs more than one charge may
UNPRICED = 77  # no rate in the plan: RATING_FAILED

VOICE_MICROS_PER_S = 1_000
SMS_MICROS = 100_000
FUNDS = 10_000_000  # 10.00 of the currency, the starting balance of every test account

RATES = [
    pb.RatingGroupRate(rating_group=VOICE, unit=pb.SECONDS, price_micros=60_000, rate_units=60, increment_units=1),
    pb.RatingGroupRate(rating_group=DATA, unit=pb.BYTES, price_micros=1_000, rate_units=1_000_000,
                       increment_units=1_000),
    pb.RatingGroupRate(rating_group=SMS, unit=pb.EVENTS, price_micros=SMS_MICROS, rate_units=1, increment_units=1),
    pb.RatingGroupRate(rating_group=ODD, unit=pb.SECONDS, price_micros=1, rate_units=3, increment_units=1),
    pb.RatingGroupRate(rating_group=PRICEY, unit=pb.EVENTS, price_micros=10**9, rate_units=1, increment_units=1),
]

INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


def new_id(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex}"


@dataclasses.dataclass(frozen=True)
class Money:
    """What GetBalance says, as one comparable value."""

    result: int
    balance: int
    reserved: int
    available: int
    currency: str
    credit_limit: int


def money(charging_stub, subscriber_id: str) -> Money:
    reply = charging_stub.GetBalance(pb.GetBalanceRequest(subscriber_id=subscriber_id), timeout=10)
    return Money(reply.result, reply.balance_micros, reply.reserved_micros, reply.available_micros, reply.currency,
                 reply.credit_limit_micros)


def transaction(charging_stub, subscriber_id: str, request_id: str) -> pb.GetTransactionResponse:
    return charging_stub.GetTransaction(
        pb.GetTransactionRequest(subscriber_id=subscriber_id, request_id=request_id), timeout=10)


@dataclasses.dataclass
class ErrorView:
    """A failed call's status, with the google.rpc details the grid attaches."""

    code: grpc.StatusCode
    message: str
    violations: list  # [(field, description)] from google.rpc.BadRequest
    info: error_details_pb2.ErrorInfo | None

    @property
    def field(self) -> str | None:
        """The field BadRequest names first (INVALID_ARGUMENT)."""
        return self.violations[0][0] if self.violations else None

    @property
    def info_field(self) -> str | None:
        return None if self.info is None else self.info.metadata.get("field")


def view_status(status: status_pb2.Status) -> ErrorView:
    violations, info = [], None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend((v.field, v.description) for v in bad_request.field_violations)
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
    return ErrorView(_code_by_number(status.code), status.message, violations, info)


def _code_by_number(number: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    raise AssertionError(f"unknown status code {number}")


def view_error(error: grpc.RpcError) -> ErrorView:
    status = rpc_status.from_call(error)
    if status is None:  # no rich status: a transport-level error (e.g. message too large)
        return ErrorView(error.code(), error.details() or "", [], None)
    view = view_status(status)
    assert view.code == error.code(), (view.code, error.code())
    return view


def failing(call, *args, **kwargs) -> ErrorView:
    """Make a raw-stub call that must fail and return its status."""
    try:
        reply = call(*args, **kwargs)
    except grpc.RpcError as error:
        return view_error(error)
    raise AssertionError(f"the call succeeded with {type(reply).__name__}: {reply}")


def without_replayed(message):
    """A copy of a reply with replayed cleared, to compare a replay with its original."""
    copy = type(message)()
    copy.CopyFrom(message)
    copy.replayed = False
    return copy


@dataclasses.dataclass(frozen=True)
class Subscriber:
    """A funded ACTIVE account on its own tariff plan (RATES), FUNDS on it."""

    id: str
    plan_id: str
    currency: str = "EUR"


def put_plan(stubs, plan_id: str | None = None) -> str:
    plan_id = plan_id or new_id("plan-")
    reply = stubs.catalog.PutTariff(pb.PutTariffRequest(tariff_plan_id=plan_id, rates=RATES), timeout=30)
    assert reply.result == pb.SUCCESS and reply.version == 1, reply
    return plan_id


def open_account(stubs, plan_id: str, funds: int = FUNDS, credit_limit_micros: int = 0,
                 subscriber_id: str | None = None) -> Subscriber:
    subscriber_id = subscriber_id or new_id("sub-")
    created = stubs.account.CreateAccount(pb.CreateAccountRequest(
        request_id=new_id("create-"), subscriber_id=subscriber_id, currency="EUR",
        credit_limit_micros=credit_limit_micros, tariff_plan_id=plan_id), timeout=30)
    assert created.result == pb.SUCCESS, created
    if funds:
        topped = stubs.charging.TopUp(pb.TopUpRequest(
            request_id=new_id("fund-"), subscriber_id=subscriber_id, amount_micros=funds), timeout=30)
        assert topped.result == pb.SUCCESS and topped.balance_micros == funds, topped
    return Subscriber(subscriber_id, plan_id)


# ---------------------------------------------------------------- request builders


def reserve_request(subscriber_id: str, units: int, rating_group: int = VOICE, session_id: str | None = None,
                    request_id: str | None = None) -> pb.ReserveRequest:
    return pb.ReserveRequest(request_id=request_id or new_id("rsv-"), subscriber_id=subscriber_id,
                             session_id=session_id or new_id("session-"), rating_group=rating_group,
                             requested_units=units)


def debit_request(subscriber_id: str, used_units: int, reservation_id: str = "", rating_group: int = 0,
                  final: bool = False, request_id: str | None = None) -> pb.DebitRequest:
    return pb.DebitRequest(request_id=request_id or new_id("dbt-"), subscriber_id=subscriber_id,
                           reservation_id=reservation_id, rating_group=rating_group, used_units=used_units,
                           final=final)


def release_request(subscriber_id: str, reservation_id: str, request_id: str | None = None) -> pb.ReleaseRequest:
    return pb.ReleaseRequest(request_id=request_id or new_id("rel-"), subscriber_id=subscriber_id,
                             reservation_id=reservation_id)


def refund_request(subscriber_id: str, charge_id: str, amount_micros: int,
                   request_id: str | None = None) -> pb.RefundRequest:
    return pb.RefundRequest(request_id=request_id or new_id("ref-"), subscriber_id=subscriber_id,
                            charge_id=charge_id, amount_micros=amount_micros)


def top_up_request(subscriber_id: str, amount_micros: int, request_id: str | None = None) -> pb.TopUpRequest:
    return pb.TopUpRequest(request_id=request_id or new_id("top-"), subscriber_id=subscriber_id,
                           amount_micros=amount_micros)


def create_account_request(subscriber_id: str, tariff_plan_id: str, currency: str = "EUR",
                           credit_limit_micros: int = 0, request_id: str | None = None) -> pb.CreateAccountRequest:
    return pb.CreateAccountRequest(request_id=request_id or new_id("acc-"), subscriber_id=subscriber_id,
                                   currency=currency, credit_limit_micros=credit_limit_micros,
                                   tariff_plan_id=tariff_plan_id)


def set_state_request(subscriber_id: str, state: int, request_id: str | None = None) -> pb.SetAccountStateRequest:
    return pb.SetAccountStateRequest(request_id=request_id or new_id("state-"), subscriber_id=subscriber_id,
                                     state=state)


class Calls:
    """Terse unary calls over the raw stubs, each with a fresh request id unless given."""

    def __init__(self, stubs, timeout_s: float = 30) -> None:
        self.stubs = stubs
        self.timeout_s = timeout_s

    def reserve(self, *args, **kwargs) -> pb.ReserveResponse:
        return self.stubs.charging.Reserve(reserve_request(*args, **kwargs), timeout=self.timeout_s)

    def debit(self, *args, **kwargs) -> pb.DebitResponse:
        return self.stubs.charging.Debit(debit_request(*args, **kwargs), timeout=self.timeout_s)

    def release(self, *args, **kwargs) -> pb.ReleaseResponse:
        return self.stubs.charging.Release(release_request(*args, **kwargs), timeout=self.timeout_s)

    def refund(self, *args, **kwargs) -> pb.RefundResponse:
        return self.stubs.charging.Refund(refund_request(*args, **kwargs), timeout=self.timeout_s)

    def top_up(self, *args, **kwargs) -> pb.TopUpResponse:
        return self.stubs.charging.TopUp(top_up_request(*args, **kwargs), timeout=self.timeout_s)

    def create_account(self, *args, **kwargs) -> pb.CreateAccountResponse:
        return self.stubs.account.CreateAccount(create_account_request(*args, **kwargs), timeout=self.timeout_s)

    def set_state(self, *args, **kwargs) -> pb.SetAccountStateResponse:
        return self.stubs.account.SetAccountState(set_state_request(*args, **kwargs), timeout=self.timeout_s)

    def get_account(self, subscriber_id: str) -> pb.GetAccountResponse:
        return self.stubs.account.GetAccount(pb.GetAccountRequest(subscriber_id=subscriber_id),
                                             timeout=self.timeout_s)

    def money(self, subscriber_id: str) -> Money:
        return money(self.stubs.charging, subscriber_id)

    def transaction(self, subscriber_id: str, request_id: str) -> pb.GetTransactionResponse:
        return transaction(self.stubs.charging, subscriber_id, request_id)


class ServingGrid:
    """Another EmbeddedGrid next to the session's (it joins the running Ray and never
    stops it; its shard actors are named after its own data directory), with raw
    stubs and Calls over one channel."""

    def __init__(self, data_dir, **config) -> None:
        from charging.v1 import charging_pb2_grpc as pb_grpc

        from grid.config import GridConfig
        from grid.server import EmbeddedGrid

        self.grid = EmbeddedGrid(GridConfig(plaintext=True, data_dir=data_dir, port=0, **config))
        self.grid.start()
        self.target = self.grid.target
        self.channel = grpc.insecure_channel(self.target)
        self.stubs = types.SimpleNamespace(
            channel=self.channel,
            charging=pb_grpc.ChargingServiceStub(self.channel),
            account=pb_grpc.AccountServiceStub(self.channel),
            catalog=pb_grpc.CatalogServiceStub(self.channel),
        )
        self.calls = Calls(self.stubs)

    def stop(self) -> None:
        self.channel.close()
        self.grid.stop()


class LostReply(grpc.RpcError, grpc.Call):
    """What a caller sees when the answer never came back (the server may have applied the call)."""

    def __init__(self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        super().__init__(f"{code.name} (injected by the test)")
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return "injected by the test: the reply was lost"

    def initial_metadata(self):
        return ()

    def trailing_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False
