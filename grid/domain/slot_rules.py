"""Live slot moves: hand a slot's subscribers from one shard to another.

Part of the shard state machine (ShardState mixes this in). A move is three
operations, each applied in its shard's order and written in one synced batch:

1. ExportSlots at the source: the slots are frozen (persisted in the shard's
   meta record) and every record their subscribers own is parked: out of the
   live state, so no operation, expiry sweep or supervision touches them, and
   handed to the mover. From then on the source answers SlotMoved to any
   operation for those subscribers: nothing is applied there.
2. ImportSlots at the target: the records are adopted (idempotently: a second
   import of the same records changes nothing) and journaled SLOT_MOVED_IN.
   Then the mover switches the shard map (a new epoch) and front doors route
   the slots to the target; an operation answered SlotMoved is sent again with
   the same request id by the newer map, so it applies once, at the target,
   whose idempotency records came with the accounts.
3. DropSlots at the source: the parked records are deleted and each account
   is journaled SLOT_MOVED_OUT with its balance, so each shard's audit still
   adds up (top-ups - charges + refunds - moved out + moved in = balances).

A mover that dies between steps leaves the slots frozen at the source (their
operations wait, nothing is lost); running the move again finishes it.
"""

import collections
import heapq

from grid.domain import operations as ops
from grid.domain.outcomes import JournalKind, ReservationState, Result, SessionState
from grid.domain.records import (
    Account, BillingCycle, Charge, ControlState, CounterState, IdempotencyRecord, Reservation, Session, Subscription,
    VolumeCounter,
)
from grid.routing import slot_of

# The records a subscriber owns, which move with its slot (journal records and
# notifications stay: they are the source shard's history).
OWNED = (Account, Reservation, Charge, IdempotencyRecord, Session, CounterState, Subscription, ControlState,
         BillingCycle, VolumeCounter)


class SlotRules:
    """The slot-move half of ShardState."""

    def _init_slots(self) -> None:
        self._slots_out: frozenset[int] = frozenset()
        # slot -> the records parked there by ExportSlots until DropSlots.
        self._parked: dict[int, list] = collections.defaultdict(list)
        self.deleted_records: list = []

    def _refresh_slots_out(self) -> None:
        self._slots_out = frozenset(self.meta.slots_out)

    def slot_moved(self, operation) -> ops.SlotMoved | None:
        """SlotMoved for an operation whose subscriber's slot this shard gave away."""
        if not self._slots_out:
            return None
        subscriber_id = getattr(operation, "subscriber_id", None)
        if subscriber_id is None or isinstance(subscriber_id, bytes):
            return None
        slot = slot_of(operation.tenant, subscriber_id, self.meta.slot_count)
        return ops.SlotMoved(slot) if slot in self._slots_out else None

    def owns_slot_of(self, record) -> bool:
        """Whether a restored record belongs to a slot still served here."""
        if not self._slots_out or not isinstance(record, OWNED):
            return True
        return slot_of(record.tenant, record.subscriber_id, self.meta.slot_count) not in self._slots_out

    def park(self, record) -> None:
        self._parked[slot_of(record.tenant, record.subscriber_id, self.meta.slot_count)].append(record)

    # ------------------------------------------------------------ the three steps

    def _export_slots(self, op: ops.ExportSlots, now_ms: int) -> ops.SlotsReply:
        slots = set(op.slots)
        if self.meta.slot_count and self.meta.slot_count != op.slot_count:
            raise AssertionError(f"slot count {op.slot_count}, this shard counts {self.meta.slot_count}")
        self.meta.slot_count = op.slot_count
        self.meta.slots_out = tuple(sorted(set(self.meta.slots_out) | slots))
        self._refresh_slots_out()
        self._mark("meta", 0, self.meta)
        for record in self._owned_records_of(slots):
            self._forget_owned(record)
            self.park(record)
        records = tuple(record for slot in sorted(slots) for record in self._parked.get(slot, ()))
        return ops.SlotsReply(accounts=sum(isinstance(r, Account) for r in records), records=records)

    def _import_slots(self, op: ops.ImportSlots, now_ms: int) -> ops.SlotsReply:
        slots = set(op.slots)
        if slots & self._slots_out:  # the slots come back: this shard serves them again
            # What an earlier export parked here and no drop deleted is an old copy of
            # what arrives now: it leaves as a drop would have (journaled moved out),
            # so it is never handed out again and this shard's audit adds up.
            stale = tuple(sorted(slot for slot in slots if self._parked.get(slot)))
            if stale:
                self._drop_slots(ops.DropSlots(stale), now_ms)
            self.meta.slots_out = tuple(s for s in self.meta.slots_out if s not in slots)
            self._refresh_slots_out()
            self._mark("meta", 0, self.meta)
        arrived = 0
        for record in op.records:
            if isinstance(record, Account) and record.key not in self.accounts:
                arrived += 1
                self._adopt(record)
                self._journal(JournalKind.SLOT_MOVED_IN, record, "", Result.SUCCESS, now_ms, "",
                              amount_micros=record.balance_micros)
            elif not isinstance(record, Account):
                self._adopt(record)
        return ops.SlotsReply(accounts=arrived)

    def _drop_slots(self, op: ops.DropSlots, now_ms: int) -> ops.SlotsReply:
        dropped = 0
        for slot in op.slots:
            for record in self._parked.pop(slot, ()):
                self.deleted_records.append(record)
                if isinstance(record, Account):
                    dropped += 1
                    self._journal(JournalKind.SLOT_MOVED_OUT, record, "", Result.SUCCESS, now_ms, "",
                                  amount_micros=record.balance_micros)
        self._mark("meta", 0, self.meta)
        return ops.SlotsReply(accounts=dropped)

    # ------------------------------------------------------------ records in and out

    def _owned_records_of(self, slots: set[int]) -> list:
        count = self.meta.slot_count

        def mine(record) -> bool:
            return slot_of(record.tenant, record.subscriber_id, count) in slots

        found = [a for a in self.accounts.values() if mine(a)]
        for table in (self.reservations, self.charges, self.idempotency, self.sessions, self.counters,
                      self.subscriptions, self.control_states, self.billing_cycles, self.volume_counters):
            found.extend(record for record in table.values() if mine(record))
        return found

    def _forget_owned(self, record) -> None:
        """Out of the live state and its indexes (stale index entries are skipped
        by the sweeps, which look each record up)."""
        if isinstance(record, Account):
            del self.accounts[record.key]
            self._active_holds.pop(record.key, None)
            self._account_sessions.pop(record.key, None)
            self._account_subscriptions.pop(record.key, None)
        elif isinstance(record, Reservation):
            del self.reservations[record.reservation_id]
        elif isinstance(record, Charge):
            del self.charges[record.charge_id]
        elif isinstance(record, IdempotencyRecord):
            del self.idempotency[(record.tenant, record.subscriber_id, record.request_id)]
        elif isinstance(record, Session):
            del self.sessions[record.key]
        elif isinstance(record, CounterState):
            del self.counters[record.key]
        elif isinstance(record, Subscription):
            del self.subscriptions[record.key]
        elif isinstance(record, ControlState):
            del self.control_states[record.key]
        elif isinstance(record, BillingCycle):
            del self.billing_cycles[record.key]
        elif isinstance(record, VolumeCounter):
            del self.volume_counters[record.key]

    def _adopt(self, record) -> None:
        """Into the live state and its indexes, and into this batch's write."""
        if isinstance(record, Account):
            self.accounts[record.key] = record
            self._mark("account", record.key, record)
        elif isinstance(record, Reservation):
            self.reservations[record.reservation_id] = record
            self._reservation_order.append((record.expires_at_ms, record.reservation_id))
            if record.state == ReservationState.ACTIVE:
                self._active_holds.setdefault(record.account_key, {})[record.reservation_id] = record
                heapq.heappush(self._expiry_heap, (record.expires_at_ms, record.reservation_id))
            self._mark("reservation", record.reservation_id, record)
        elif isinstance(record, Charge):
            self.charges[record.charge_id] = record
            self._charge_order.append((record.charged_at_ms, record.charge_id))
            self._mark("charge", record.charge_id, record)
        elif isinstance(record, IdempotencyRecord):
            key = (record.tenant, record.subscriber_id, record.request_id)
            self.idempotency[key] = record
            self._idempotency_order.append((record.recorded_at_ms, key))
            self._mark("idempotency", key, record)
        elif isinstance(record, Session):
            self.sessions[record.key] = record
            if record.state == SessionState.SESSION_STATE_ACTIVE:
                self._account_sessions.setdefault(record.account_key, {})[record.key] = record
                heapq.heappush(self._supervision_heap, (record.supervision_deadline_ms, record.key))
            else:
                heapq.heappush(self._closed_sessions, (record.closed_at_ms, record.key))
            self._mark("session", record.key, record)
        elif isinstance(record, CounterState):
            self.counters[record.key] = record
            self._mark("counter", record.key, record)
        elif isinstance(record, Subscription):
            self._add_subscription(record)
            self._mark("subscription", record.key, record)
        elif isinstance(record, ControlState):
            self.control_states[record.key] = record
            self._mark("control", record.key, record)
        elif isinstance(record, BillingCycle):
            self.billing_cycles[record.key] = record
            self._mark("billing_cycle", record.key, record)
        elif isinstance(record, VolumeCounter):
            self.volume_counters[record.key] = record
            self._mark("volume", record.key, record)
