"""`grid demo`: serve an embedded grid on a scratch directory, drive a small
charging workload through the real client over gRPC, print what happened,
check that the money adds up, and stop."""

import pathlib
import tempfile
import time

from grid.config import GridConfig

VOICE, DATA, SMS = 1, 2, 3
EUR = 1_000_000  # micros in one euro


def _money(micros: int) -> str:
    sign = "-" if micros < 0 else ""
    return f"{sign}{abs(micros) // EUR}.{abs(micros) % EUR:06d} EUR"


def run(data_dir: pathlib.Path | None = None) -> int:
    from grid.server import EmbeddedGrid
    from grid_client import ChargingClient, RequestIdReused, pb

    scratch = None
    if data_dir is None:
        scratch = tempfile.TemporaryDirectory(prefix="grid-demo-")
        data_dir = pathlib.Path(scratch.name)
    started = time.monotonic()
    embedded = EmbeddedGrid(GridConfig(plaintext=True, data_dir=data_dir, port=0))
    embedded.start()
    print(f"grid serving on {embedded.target} with 2 shards in {time.monotonic() - started:.1f}s (data: {data_dir})")
    try:
        with ChargingClient(embedded.target) as client:
            plan = client.put_tariff("demo-plan", [
                {"rating_group": VOICE, "unit": pb.SECONDS, "price_micros": 20_000, "rate_units": 60,
                 "increment_units": 60},  # 0.02 EUR a minute, per started minute
                {"rating_group": DATA, "unit": pb.BYTES, "price_micros": 10_000, "rate_units": 1_000_000,
                 "increment_units": 1000},  # 0.01 EUR a MB, per started KB
                {"rating_group": SMS, "unit": pb.EVENTS, "price_micros": 90_000, "rate_units": 1,
                 "increment_units": 1},
            ])
            print(f"tariff demo-plan version {plan.version}: voice 0.02/min, data 0.01/MB, SMS 0.09")
            spent = 0
            for name in ("alice", "bob"):
                client.create_account(name, "EUR", "demo-plan")
                client.top_up(name, 5 * EUR)
            print("accounts alice and bob opened with 5.00 EUR each")

            hold = client.reserve("alice", "call-1", VOICE, 600)
            print(f"alice reserves 600 s of voice: granted {hold.granted_units} s, held {_money(hold.held_micros)}")
            used = client.debit("alice", 130, reservation_id=hold.reservation_id, final=True)
            spent += used.charged_micros
            print(f"alice talks 130 s: charged {_money(used.charged_micros)} (3 started minutes), "
                  f"released {_money(used.released_micros)}")

            request_id = "sms-42"
            sms = client.debit("bob", 1, rating_group=SMS, request_id=request_id)
            again = client.debit("bob", 1, rating_group=SMS, request_id=request_id)
            spent += sms.charged_micros
            print(f"bob sends an SMS: charged {_money(sms.charged_micros)}; the retry is replayed={again.replayed}, "
                  "charged once")
            try:
                client.debit("bob", 2, rating_group=SMS, request_id=request_id)
            except RequestIdReused as error:
                print(f"the same request id with another payload is refused: {error.field} differs")

            refund = client.refund("bob", sms.charge_id, 90_000)
            spent -= refund.refunded_micros
            print(f"bob's SMS is refunded: {_money(refund.refunded_micros)}")

            greedy = client.reserve("bob", "download", DATA, 10**12)
            print(f"bob asks for 1 TB of data: granted {greedy.granted_units} bytes "
                  f"(final_unit_indication={greedy.final_unit_indication}), held {_money(greedy.held_micros)}")
            denied = client.reserve("bob", "download-2", DATA, 10**6)
            print(f"bob asks for 1 MB more: {pb.Result.Name(denied.result)} (everything is held)")
            released = client.release("bob", greedy.reservation_id)
            print(f"bob's download is cancelled: released {_money(released.released_micros)}")

            total = 0
            for name in ("alice", "bob"):
                balance = client.balance(name)
                total += balance.balance_micros
                print(f"{name}: balance {_money(balance.balance_micros)}, held {_money(balance.reserved_micros)}, "
                      f"available {_money(balance.available_micros)}")
            topped_up = 10 * EUR
            ok = topped_up - spent == total
            print(f"conservation: top-ups {_money(topped_up)} - charges + refunds {_money(spent)} "
                  f"= balances {_money(total)}: {'OK' if ok else 'MISMATCH'}")
            return 0 if ok else 1
    finally:
        embedded.stop()
        if scratch is not None:
            scratch.cleanup()
