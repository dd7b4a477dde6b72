#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris, libFuzzer) of the storage codec, operation
validation and the shard core. A standalone script, not a test.

    pip install atheris        # a cp311 wheel exists
    python load_tests/fuzz_codec_atheris.py TARGET [--strict] [--big-stack] [libFuzzer flags] [CORPUS_DIR ...]

    e.g. python load_tests/fuzz_codec_atheris.py decode_body -max_total_time=60 -print_final_stats=1 /tmp/corpus-body

Targets (each a property; a violation is a libFuzzer crash, with its input
written as crash-<sha1> under -artifact_prefix):

  decode        codec.decode(data): a value or CorruptRecord, nothing else.
  decode_body   codec.decode(data + CRC-32(data)): the same, past the checksum
                (what a checksum collision or a codec bug would hand msgpack).
  unpack_batch  codec.unpack_batch(data): a list or CorruptRecord.
  validate      validation.validate(op) on operations of every kind built from
                the input (hostile strings and ints, enums out of range, long
                repeated fields, and, rarely, values of the wrong Python type):
                None or InvalidArgument naming the field, nothing else.
  apply         ShardState.apply(op) on a live shard (accounts, holds, charges,
                sessions, a clock moved by the input) with operations as the front
                door can make them from gRPC: never raises (a raise kills a shard
                actor), every record it writes round-trips through the codec, and
                its invariants hold.

Bounded by libFuzzer's -runs=N or -max_total_time=S. --strict: every violation
is a crash (use it: the findings of the first campaign are fixed, 07c880d and
e02dcf9). Without it, the kinds of violation that campaign found (decode returning
non-records, unpack_batch letting msgpack's and Python's errors escape, the
GetBillingCycle far-future crash, TypeError from validation) are counted and
skipped so that a run goes on looking for new ones; the counts and a first
reproducer of each go to $FUZZ_FINDINGS (default fuzz-findings-TARGET.json) as
they are seen. --big-stack re-executes the script with a 1 GiB main-thread stack
(deeply nested msgpack extensions overflowed the default 8 MiB one before 07c880d).
"""

import json
import os
import resource
import struct
import sys
import zlib

import atheris

with atheris.instrument_imports(include=["grid"]):
    from grid.domain import operations as ops
    from grid.domain import records
    from grid.domain.limits import CoreLimits
    from grid.domain.outcomes import (
        AccountState, ControlAction, ControlKind, CounterPeriod, FinalUnitAction, Unit,
    )
    from grid.domain.rating import Control, CounterThreshold, PolicyCounter, Rate, TariffPlan
    from grid.domain.shard_state import ShardState
    from grid.domain.validation import InvalidArgument, validate
    from grid.storage import codec

import msgpack

TARGETS = ("decode", "decode_body", "unpack_batch", "validate", "apply")
LIMITS = CoreLimits()
T = ops.DEFAULT_TENANT
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
UINT32_MAX = 2**32 - 1
# GetBillingCycle at_ms from here on raises in the core (tests/core/test_fuzz_findings.py).
BILLING_CYCLE_AT_MS_CRASH = 253_399_622_400_000

STRICT = False
FINDINGS_PATH = ""
_findings: dict = {}


def known(kind: str, data: bytes, detail: str = "") -> None:
    """Count a known finding (and keep its first reproducer)."""
    entry = _findings.setdefault(kind, {"count": 0, "first_input_hex": data[:4096].hex(), "detail": detail[:500]})
    entry["count"] += 1
    if entry["count"] == 1 or entry["count"] in (10, 100, 1000, 10_000, 100_000):
        with open(FINDINGS_PATH, "w") as out:
            json.dump(_findings, out, indent=1)


# ---------------------------------------------------------------- codec targets


def _is_record(value) -> bool:
    return type(value) in codec.TYPE_CODES


def fuzz_decode(data: bytes, framed: bool) -> None:
    value = data + struct.pack(">I", zlib.crc32(data)) if framed else data
    try:
        decoded = codec.decode(value)
    except codec.CorruptRecord:
        return
    if not _is_record(decoded):
        if STRICT:
            raise AssertionError(f"decode returned a non-record {decoded!r}")
        known("decode returns a non-record", value, repr(decoded)[:200])


# What unpack_batch lets escape today (the known finding); anything else is new.
_UNPACK_LEAKS = (ValueError, TypeError, IndexError, RecursionError, msgpack.exceptions.ExtraData)


def fuzz_unpack_batch(data: bytes) -> None:
    try:
        result = codec.unpack_batch(data)
    except codec.CorruptRecord:
        return
    except _UNPACK_LEAKS as error:
        if STRICT:
            raise
        known(f"unpack_batch leaks {type(error).__module__}.{type(error).__name__}", data, str(error))
        return
    assert isinstance(result, list), result


# ---------------------------------------------------------------- operations from fuzz input

SUBSCRIBERS = ["s0", "s1", "s2", "s3"]
STRINGS = ["", " ", "x", " x", "x ", "\x00", "a\x00b", "\u2028", "\u200b", "\ufeff", "\U0001f600", "EUR", "eur",
           "session/x/1", "p0", "p1", "nf", "pcf", "data", "spend", "x" * 128, "x" * 129, "\u00e9" * 128, "\t"]
INTS = [0, 1, 2, -1, 7, 60, 1000, 10**15, 10**15 + 1, 10**17, 2**31 - 1, UINT32_MAX, UINT32_MAX + 1, INT64_MAX,
        -(2**63), 2**63, UINT64_MAX, UINT64_MAX + 1, BILLING_CYCLE_AT_MS_CRASH - 1, 253_402_300_799_999]
WRONG_TYPES = [None, 1.5, True, "5", b"x", [1], (1,), {"a": 1}]


class Builder:
    """Operations of every kind from a FuzzedDataProvider. grpc_shaped: only what the
    front door's convert.py can produce from a protobuf request (str, ints within
    the wire types' ranges, enum numbers within int32)."""

    def __init__(self, fdp: atheris.FuzzedDataProvider, grpc_shaped: bool, pools=None) -> None:
        self.fdp = fdp
        self.grpc_shaped = grpc_shaped
        self.pools = pools or {}

    def _wrong(self):
        if not self.grpc_shaped and self.fdp.ConsumeIntInRange(0, 31) == 0:
            return True, self.fdp.PickValueInList(WRONG_TYPES)
        return False, None

    def string(self, pool: str | None = None) -> str:
        wrong, value = self._wrong()
        if wrong:
            return value
        choice = self.fdp.ConsumeIntInRange(0, 3)
        if choice == 0 and pool and self.pools.get(pool):
            return self.fdp.PickValueInList(self.pools[pool])
        if choice == 1:
            return self.fdp.PickValueInList(STRINGS)
        return self.fdp.ConsumeUnicodeNoSurrogates(self.fdp.ConsumeIntInRange(0, 140))

    def subscriber(self) -> str:
        return self.fdp.PickValueInList(SUBSCRIBERS) if self.fdp.ConsumeBool() else self.string()

    def integer(self, low: int, high: int) -> int:
        """In [low, high] when grpc_shaped (the wire type's range), anything otherwise."""
        wrong, value = self._wrong()
        if wrong:
            return value
        choice = self.fdp.ConsumeIntInRange(0, 3)
        if choice == 0:
            value = self.fdp.PickValueInList(INTS)
        elif choice == 1:
            value = self.fdp.ConsumeIntInRange(0, 200)
        else:
            value = self.fdp.ConsumeInt(9)
        if self.grpc_shaped:
            value = low + (value - low) % (high - low + 1)
        return value

    def uint32(self) -> int:
        return self.integer(0, UINT32_MAX)

    def uint64(self) -> int:
        return self.integer(0, UINT64_MAX)

    def int64(self) -> int:
        return self.integer(-(2**63), INT64_MAX)

    def enum(self, enum_class):
        raw = self.integer(-(2**31), 2**31 - 1)
        try:
            return enum_class(raw)  # as convert._enum_or_raw
        except (ValueError, TypeError):
            return raw

    def many(self, make, most: int):
        wrong, value = self._wrong()
        if wrong:
            return value
        count = self.fdp.ConsumeIntInRange(0, most)
        if count > 8 and self.fdp.ConsumeBool():  # long: one element repeated with its index
            return tuple(make(index) for index in range(count))
        return tuple(make(None) for _ in range(min(count, 8)))

    # ------------------------------------------------------------ kinds

    def usage(self, index):
        return ops.UnitUsage(self.uint32() if index is None else index + 1, self.uint64(), self.uint64())

    def rate(self, index):
        return Rate(self.uint32() if index is None else index + 1, self.enum(Unit), self.int64(), self.uint64(),
                    self.uint64(), self.enum(FinalUnitAction), self.string())

    def counter(self, index):
        return PolicyCounter(self.string() if index is None else f"c{index}", self.many(lambda i: self.uint32(), 6),
                             self.fdp.ConsumeBool(), self.enum(CounterPeriod), self.string(),
                             self.many(lambda i: CounterThreshold(self.uint64(), self.string()), 20))

    def control(self, index):
        return Control(self.string() if index is None else f"k{index}", self.enum(ControlKind), self.uint64(),
                       self.uint32(), self.enum(ControlAction), self.many(lambda i: self.uint32(), 6))

    def plan(self):
        return TariffPlan(self.string("plans"), self.many(self.rate, 1030), policy_counters=self.many(self.counter, 34),
                          controls=self.many(self.control, 34), tenant=T)

    def operation(self):
        fdp = self.fdp
        kind = fdp.ConsumeIntInRange(0, 20)
        sub, rid = self.subscriber(), self.string("request_ids")
        if kind == 0:
            return ops.CreateAccount(T, sub, rid, self.string(), self.int64(), self.string("plans"))
        if kind == 1:
            return ops.SetAccountState(T, sub, rid, self.enum(AccountState))
        if kind == 2:
            return ops.TopUp(T, sub, rid, self.int64())
        if kind == 3:
            return ops.Reserve(T, sub, rid, self.string(), self.uint32(), self.uint64())
        if kind == 4:
            return ops.Debit(T, sub, rid, self.string("reservations"), self.uint32(), self.uint64(), fdp.ConsumeBool())
        if kind == 5:
            return ops.Release(T, sub, rid, self.string("reservations"))
        if kind == 6:
            return ops.Refund(T, sub, rid, self.string("charges"), self.int64())
        if kind == 7:
            return ops.PutTariff(self.plan())
        if kind in (8, 9, 10):
            cls = (ops.CreateSession, ops.UpdateSession, ops.ReleaseSession)[kind - 8]
            notify = "" if cls is ops.ReleaseSession and self.grpc_shaped else self.string()
            return cls(T, sub, self.string("sessions"), self.uint32(), self.many(self.usage, 70), notify)
        if kind == 11:
            return ops.GetBalance(T, sub)
        if kind == 12:
            return ops.GetAccount(T, sub)
        if kind == 13:
            return ops.GetTransaction(T, sub, rid)
        if kind == 14:
            return ops.GetTariff(self.string("plans"), T)
        if kind == 15:
            return ops.GetSession(T, sub, self.string("sessions"))
        if kind == 16:
            return ops.Subscribe(T, sub, rid, self.string(), self.many(lambda i: self.string(), 40))
        if kind == 17:
            return ops.Unsubscribe(T, sub, rid, self.string())
        if kind == 18:
            return ops.GetCounters(T, sub)
        if kind == 19:
            return ops.GetBillingCycle(T, sub, self.int64())
        return ops.ReadNotifications(T, self.string(), self.uint64(), self.integer(0, 1000),
                                     fdp.PickValueInList(["sessions", "policy", "other"]))


def fuzz_validate(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    try:
        operation = Builder(fdp, grpc_shaped=fdp.ConsumeIntInRange(0, 3) != 0).operation()
    except (TypeError, ValueError, AttributeError):
        return  # a wrong-typed value the dataclass itself refused: not validation's business
    try:
        validate(operation, LIMITS)
    except InvalidArgument as error:
        assert isinstance(error.field, str) and error.field, error
        return
    except TypeError as error:
        # Known (defence in depth, the core's own callers only): a tuple of ids holding an
        # unhashable value reaches set() before each element is checked.
        if STRICT or "unhashable" not in str(error):
            raise
        known("validate: TypeError unhashable in a repeated field", data, repr(operation)[:300])


# ---------------------------------------------------------------- the shard core


class Shard:
    """A live shard the apply target drives; rebuilt every RESET operations to stay bounded."""

    RESET = 3000

    def __init__(self) -> None:
        self.state = ShardState(0, LIMITS)
        self.now_ms = 1_700_000_000_000
        self.applied = 0
        self.pools = {"reservations": [], "charges": [], "sessions": ["sess-0"], "request_ids": ["r0"],
                      "plans": ["p0", "p1"]}
        rates = (Rate(1, Unit.SECONDS, 1000, 60, 1), Rate(2, Unit.BYTES, 1, 1_000_000, 1000),
                 Rate(3, Unit.EVENTS, 10**15, 1, 1), Rate(4, Unit.EVENTS, 0, 1, 1),
                 Rate(5, Unit.BYTES, 1, UINT64_MAX, 10**15), Rate(6, Unit.EVENTS, 7, 3, 2, FinalUnitAction.REDIRECT,
                                                                 "https://top.up"))
        counters = (PolicyCounter("data", (2,), False, CounterPeriod.COUNTER_PERIOD_MONTH, "normal",
                                  (CounterThreshold(10, "slowed"), CounterThreshold(10**6, "capped"))),
                    PolicyCounter("spend", (), True, CounterPeriod.COUNTER_PERIOD_WEEK, "ok",
                                  (CounterThreshold(10**9, "high"),)))
        controls = (Control("low", ControlKind.LOW_BALANCE, 10**6, 0, ControlAction.NOTIFY),
                    Control("burst", ControlKind.SPEND_VELOCITY, 10**9, 60, ControlAction.DENY_GRANTS),
                    Control("usage", ControlKind.USAGE_VELOCITY, 10**6, 60, ControlAction.SUSPEND, (1, 2)),
                    Control("many", ControlKind.CONCURRENT_SESSIONS, 3, 0, ControlAction.REAUTHORIZE))
        self.apply(ops.PutTariff(TariffPlan("p0", rates, policy_counters=counters, controls=controls)))
        self.apply(ops.PutTariff(TariffPlan("p1", rates[:2])))
        for index, subscriber in enumerate(SUBSCRIBERS):
            self.apply(ops.CreateAccount(T, subscriber, f"c{index}", "EUR", index * 10**6, "p0" if index < 3 else "p1"))
            self.apply(ops.TopUp(T, subscriber, f"t{index}", 10**12))

    def apply(self, operation):
        reply = self.state.apply(operation, self.now_ms)
        self.applied += 1
        for field, pool in (("reservation_id", "reservations"), ("charge_id", "charges")):
            value = getattr(reply, field, "")
            if value and len(self.pools[pool]) < 200:
                self.pools[pool].append(value)
        for info in getattr(reply, "multiple_unit_information", ()):
            if info.reservation_id and len(self.pools["reservations"]) < 200:
                self.pools["reservations"].append(info.reservation_id)
        if isinstance(operation, ops.CreateSession) and len(self.pools["sessions"]) < 50:
            self.pools["sessions"].append(operation.session_id)
        request_id = getattr(operation, "request_id", "")
        if request_id and len(self.pools["request_ids"]) < 50:
            self.pools["request_ids"].append(request_id)
        return reply


_shard: Shard | None = None


def fuzz_apply(data: bytes) -> None:
    global _shard
    if _shard is None or _shard.applied > Shard.RESET:
        _shard = Shard()
    shard = _shard
    fdp = atheris.FuzzedDataProvider(data)
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        if fdp.ConsumeIntInRange(0, 7) == 0:  # the clock moves: expiries, supervision, periods
            shard.now_ms += fdp.PickValueInList([1, 1000, 60_000, 331_000, 700_000, 86_400_000, 31 * 86_400_000])
            shard.state.expire_due(shard.now_ms)
        operation = Builder(fdp, grpc_shaped=True, pools=shard.pools).operation()
        if isinstance(operation, ops.GetBillingCycle) and operation.at_ms >= BILLING_CYCLE_AT_MS_CRASH and \
                (T, operation.subscriber_id) in shard.state.accounts and not STRICT:
            known("apply: GetBillingCycle far-future at_ms raises", data, repr(operation))
            continue
        shard.apply(operation)
    writes = shard.state.take_writes()
    for record in writes.puts:
        decoded = codec.decode(codec.encode(record))
        assert decoded == record, (record, decoded)
    shard.state.check_invariants()


# ---------------------------------------------------------------- main


def _seed_corpus(target: str, directory: str) -> None:
    """Real encodings (and a few batches) to start from, when the corpus is empty."""
    if not directory or os.listdir(directory):
        return
    samples = [
        records.Account(T, "sub", "EUR", 5, "plan", AccountState.SUSPENDED, -7, 3, 1_700_000_000_000),
        records.ShardMeta(3, 9, 10, 11, 12),
        records.Session(T, "sub", "sess", records.SessionState.SESSION_STATE_ACTIVE, "nf-1", 4, ((1, "R0-1"),),
                        1, 2, 3, 0),
        ops.Reserve(T, "sub", "req", "sess", 1, 600, "trace"),
        ops.UpdateSession(T, "s", "x", 4, (ops.UnitUsage(1, 60, 30),), "nf", "t"),
        TariffPlan("plan", (Rate(1, Unit.SECONDS, 1000, 60, 1),), 3),
        records.IdempotencyRecord(T, "sub", "req", ops.TopUp(T, "sub", "req", 5), ops.TopUpReply(
            records.Result.SUCCESS, 5), 9),
    ]
    blobs = []
    for sample in samples:
        encoded = codec.encode(sample)
        blobs.append(encoded if target == "decode" else encoded[:-4])
    blobs.append(codec.pack_batch(samples))
    for index, blob in enumerate(blobs):
        with open(os.path.join(directory, f"seed-{index}"), "wb") as out:
            out.write(blob)


def main() -> None:
    global STRICT, FINDINGS_PATH
    argv = list(sys.argv)
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{'|'.join(TARGETS)}}} [--strict] [--big-stack] [libFuzzer flags] [corpus]")
    target = argv.pop(1)
    if "--big-stack" in argv:
        argv.remove("--big-stack")
        if resource.getrlimit(resource.RLIMIT_STACK)[0] != 1 << 30:
            resource.setrlimit(resource.RLIMIT_STACK, (1 << 30, resource.getrlimit(resource.RLIMIT_STACK)[1]))
            os.execv(sys.executable, [sys.executable, argv[0], target, "--big-stack", *argv[1:]])
        sys.setrecursionlimit(1000)
    if "--strict" in argv:
        argv.remove("--strict")
        STRICT = True
    FINDINGS_PATH = os.environ.get("FUZZ_FINDINGS", f"fuzz-findings-{target}.json")
    corpus = [arg for arg in argv[1:] if not arg.startswith("-")]
    for directory in corpus[:1]:
        os.makedirs(directory, exist_ok=True)
        _seed_corpus(target, directory)
    one = {
        "decode": lambda data: fuzz_decode(data, framed=False),
        "decode_body": lambda data: fuzz_decode(data, framed=True),
        "unpack_batch": fuzz_unpack_batch,
        "validate": fuzz_validate,
        "apply": fuzz_apply,
    }[target]
    atheris.Setup(argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
