"""Paper runs: starting one from a request (validated), and every later step of its life.

A run is its `RunConfig` (fixed) and its `RunSnapshot` (moving). A step (start, decisions with
their fills, settlement, stop, end) is applied to the snapshot in memory at once — the next
decision sees its effect — and queued as a `Part`; `PaperRun.next_update` combines the oldest
queued parts into one `RunUpdate` whose snapshot is the one after its last part, and
`mark_stored` drops them once JetStream has it (`services.paper.commit`). Snapshots are immutable
structs: a step replaces the run's snapshot, never edits it.

Rules decided here (the HTTP API relies on them; `new_config` and `PaperRun.watches`):

- `starting_usd`: positive and finite (at most 1e12 USD). `duration_minutes`: omitted or 0 runs until
  stopped, ending at the hard cap (MT_PAPER_MAX_DURATION_MIN, 7 days) with stop_reason
  `max_duration`; a positive duration ends the run then with stop_reason `duration`; more than the
  cap, negative or not finite is refused (422 naming the field, the value and the cap).
- `opportunity_key` and `opportunity_keys` are merged (duplicates dropped, order kept); a blank
  `opportunity_key` counts as not given; a blank entry in the list, or a key longer than 200
  characters or with whitespace, is refused. No keys: every opportunity.
- `label` at most 200 characters, `notes` at most 2,000. Filters: `venues` must be venues paper
  trades; `min_net_edge_cents` finite and >= 0, and it can only raise the profile's minimum.
- A run decides an order (intent or span start) iff started_at <= order.ts < its end (ends_at; a
  stopped run decides nothing more), the order's stream sequence is past the run's last one and
  its id is not in the run's `ahead` (decided on the hot path; an order from the hot path has no
  sequence yet), the opportunity key is one of the run's (or the run has none), and the filters match: every leg's
  venue in `venues` (an order without legs does not match a venues filter), the strategy in
  `strategies`, some leg's instrument matching an `instruments`
  fnmatch pattern (case-sensitive).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from libs.ids import new_id
from libs.paper.engine import DecisionRow, RunLimits, RunOutcome, decision_columns
from libs.paper.views import run_view
from proto import codec, subjects
from proto.events import Intent, Opportunity
from proto.paper import (
    BalanceChange,
    DecisionColumns,
    PendingSettlement,
    RunConfig,
    RunFilters,
    RunSnapshot,
    RunUpdate,
    RunView,
    StartRun,
    Validation,
)
from proto.units import CASH_SCALE

MAX_LABEL = 200
MAX_NOTES = 2_000
MAX_KEY = 200
MAX_KEYS = 1_000
MAX_STARTING_USD = 1e12
SMALL_BATCH = 8
"""Batches up to this many orders are matched one by one in Python, larger ones with numpy."""
MAX_TRADED = 10_000
"""Most opportunity ids a run's `snapshot.traded` keeps (the oldest by intent ts dropped first): ids
are forgotten when their opportunity closes, so this bounds the snapshot only if closes go missing."""
TRADED_MAX_AGE_NS = 24 * 3600 * 1_000_000_000
"""An id traded by an intent this much older (intent ts) than the newest trade is dropped too: a
close the service missed (it closed while a restart lost the pending forgets) no longer keeps it
for good. An opening still sending intents a day after its trade would be traded again."""
NS_PER_MIN = 60 * 1_000_000_000


class RunError(Exception):
    """A refused svc.paper request: an HTTP-like status and a detail naming what was wrong."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _keys(req: StartRun) -> list[str]:
    r = req.request
    named: list[tuple[str, str]] = []
    if r.opportunity_key is not None and r.opportunity_key.strip():
        named.append(("opportunity_key", r.opportunity_key))
    for j, key in enumerate(r.opportunity_keys or []):
        named.append((f"opportunity_keys[{j}]", key))
    if len(named) > MAX_KEYS:
        raise RunError(422, f"opportunity_keys has {len(named)} keys, at most {MAX_KEYS}")
    out: list[str] = []
    for name, key in named:
        if not key.strip():
            raise RunError(422, f"{name}={key!r} must not be blank")
        if len(key) > MAX_KEY or re.search(r"\s", key):
            raise RunError(422, f"{name}={key[:60]!r} must be at most {MAX_KEY} characters without whitespace")
        if key not in out:
            out.append(key)
    return out


def _filters(f: RunFilters | None, venues: Sequence[str]) -> RunFilters:
    if f is None:
        return RunFilters()
    for j, v in enumerate(f.venues):
        if v not in venues:
            raise RunError(422, f"filters.venues[{j}]={v!r} is not a venue paper trades ({', '.join(sorted(venues))})")
    for name, values in (("strategies", f.strategies), ("instruments", f.instruments)):
        for j, v in enumerate(values):
            if not v.strip():
                raise RunError(422, f"filters.{name}[{j}]={v!r} must not be blank")
    m = f.min_net_edge_cents
    if m is not None and (not _finite(m) or m < 0):
        raise RunError(422, f"filters.min_net_edge_cents={m!r} must be a finite number of cents >= 0")
    return f


def new_config(
    req: StartRun,
    *,
    now: int,
    max_duration_min: float,
    settlement_delay_ns: int,
    validation: Validation,
    venues: Sequence[str],
) -> RunConfig:
    """The RunConfig a StartRun asks for, or RunError(422) naming the first bad field."""
    r = req.request
    try:
        subjects.token(req.user_id, "user_id")
    except ValueError as e:
        raise RunError(422, str(e)) from None
    if not _finite(r.starting_usd) or r.starting_usd <= 0:
        raise RunError(422, f"starting_usd={r.starting_usd!r} must be a positive, finite amount of USD")
    if r.starting_usd > MAX_STARTING_USD:
        raise RunError(422, f"starting_usd={r.starting_usd!r} must be at most {MAX_STARTING_USD:,.0f}")
    starting = round(r.starting_usd * CASH_SCALE)
    if starting <= 0:
        raise RunError(422, f"starting_usd={r.starting_usd!r} is less than one micro-dollar")
    d = r.duration_minutes
    if d is None or d == 0:
        duration, ends_at = 0.0, now + round(max_duration_min * NS_PER_MIN)
    elif not _finite(d):
        raise RunError(422, f"duration_minutes={d!r} must be a finite number of minutes")
    elif d < 0:
        raise RunError(422, f"duration_minutes={d!r} must not be negative (0 or omitted: until stopped)")
    elif d > max_duration_min:
        raise RunError(
            422,
            f"duration_minutes={d:g} exceeds the maximum of {max_duration_min:g} minutes "
            f"({max_duration_min / 1440:g} days); use 0 to run until stopped (the maximum still applies)",
        )
    else:
        duration, ends_at = float(d), now + round(d * NS_PER_MIN)
    if len(r.label) > MAX_LABEL:
        raise RunError(422, f"label has {len(r.label)} characters, at most {MAX_LABEL}")
    if len(r.notes) > MAX_NOTES:
        raise RunError(422, f"notes has {len(r.notes)} characters, at most {MAX_NOTES}")
    keys = _keys(req)
    filters = _filters(r.filters, venues)
    for name in ("min_net_edge_micros", "max_leg_micros", "daily_cap_micros"):
        value = getattr(req, name)
        floor_ok = name == "min_net_edge_micros"
        if value < 0 or (value == 0 and not floor_ok):
            raise RunError(422, f"{name}={value} (from the user's profile) must be {'>= 0' if floor_ok else '> 0'}")
    min_edge = req.min_net_edge_micros
    if filters.min_net_edge_cents is not None:
        min_edge = max(min_edge, round(filters.min_net_edge_cents * CASH_SCALE / 100))
    return RunConfig(
        run_id=new_id(),
        user_id=req.user_id,
        label=r.label,
        notes=r.notes,
        opportunity_keys=keys,
        filters=filters,
        starting_micros=starting,
        min_net_edge_micros=min_edge,
        max_leg_micros=req.max_leg_micros,
        daily_cap_micros=req.daily_cap_micros,
        settlement_delay_ns=settlement_delay_ns,
        duration_minutes=duration,
        started_at=now,
        ends_at=ends_at,
        validation=validation,
        keys_present=sorted(set(req.keys_present)),
    )


def first_snapshot(cfg: RunConfig) -> RunSnapshot:
    """A new run's state: running with its starting cash."""
    return RunSnapshot(version=0, state="running", balance_micros=cfg.starting_micros)


def update_id(run_id: str, version: int, parts: Sequence[str]) -> str:
    """`<run_id>:v<version>:<digest of what the step carries>`: a retried publish of the same step is
    stored once (JetStream dedups by this id), a different step under a reused version is not."""
    h = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).hexdigest()
    return f"{run_id}:v{version}:{h}"


@dataclass(frozen=True, slots=True)
class Part:
    """One step of a run, applied in memory and waiting to be stored: what it adds to the record and
    the snapshot after it."""

    snap: RunSnapshot
    decisions: DecisionColumns | list[DecisionRow] | None = None
    trades: tuple = ()
    changes: tuple[BalanceChange, ...] = ()
    ui_run: bool = False
    """Send the run's view at once when stored (start, stop, end, settlement)."""


MAX_UPDATE_DECISIONS = 20_000
"""Most decisions one RunUpdate carries (a few MB at most, within NATS max_payload)."""


def _traded(old: dict[str, int], new: dict[str, int], old_floor: int | None = None) -> tuple[dict[str, int], int]:
    """A run's `snapshot.traded` after a batch traded `new`: a new dict (a snapshot is never
    mutated), without ids older than TRADED_MAX_AGE_NS before the newest trade, at most MAX_TRADED
    ids, the oldest by intent ts dropped first; and a lower bound of its oldest ts. `old_floor`: one
    of `old`'s (its minimum is taken when None): scanning every id for the oldest on every trade cost
    ~90 µs a trade (warm) for a run holding 5,000."""
    out = {**old, **new}
    floor = min(new.values())
    if old:
        floor = min(floor, min(old.values()) if old_floor is None else old_floor)
    cutoff = max(new.values()) - TRADED_MAX_AGE_NS
    if floor < cutoff:
        out = {k: v for k, v in out.items() if v >= cutoff}
        floor = min(out.values())
    if len(out) > MAX_TRADED:
        kept = sorted(out.items(), key=lambda kv: kv[1])[-MAX_TRADED:]
        out, floor = dict(kept), kept[0][1]
    return out, floor


def concat_decisions(parts: list[DecisionColumns | list[DecisionRow]]) -> DecisionColumns:
    """One DecisionColumns of the steps' decisions, in order (rows of consecutive steps are turned
    into columns together)."""
    columns: list[DecisionColumns] = []
    rows: list[DecisionRow] = []
    for d in parts:
        if isinstance(d, DecisionColumns):
            if rows:
                columns.append(decision_columns(rows))
                rows = []
            columns.append(d)
        else:
            rows += d
    if rows:
        columns.append(decision_columns(rows))
    if len(columns) <= 1:
        return columns[0] if columns else DecisionColumns()
    chain = itertools.chain.from_iterable
    fields = zip(*map(msgspec.structs.astuple, columns), strict=True)  # per field: every part's list
    names = DecisionColumns.__struct_fields__
    return DecisionColumns(**{name: list(chain(lists)) for name, lists in zip(names, fields, strict=True)})


class _WireSnapshot(RunSnapshot, frozen=True, kw_only=True):
    """A RunSnapshot as `PaperRun.encode` stores it: its pending settlements and traded ids as the
    bytes they encode to (MessagePack of the same values, so it decodes as a RunSnapshot)."""

    pending: msgspec.Raw = msgspec.Raw(b"\x90")
    traded: msgspec.Raw = msgspec.Raw(b"\x80")


_PLAIN_FIELDS = tuple(f for f in RunSnapshot.__struct_fields__ if f not in ("pending", "traded"))


@dataclass
class PaperRun:
    """One run in the paper service: config, its state in memory, the steps not yet stored.

    `snap` is the state after every step taken so far (the engine decides on it); `parts` are the
    steps since the last stored RunUpdate, oldest first. `next_update` combines the oldest parts into
    one update whose snapshot is the one after its last part, so the stream holds every step in order
    and every stored snapshot is consistent with the decisions stored before it.
    """

    config: RunConfig
    snap: RunSnapshot
    keys: frozenset[str] = frozenset()
    keys_present: frozenset[str] = frozenset()
    venues: frozenset[str] = frozenset()
    strategies: frozenset[str] = frozenset()
    patterns: re.Pattern[str] | None = None
    parts: list[Part] = field(default_factory=list)
    queued: int = 0
    """Parts queued so far (a counter: a waiter waits for `stored` to reach it)."""
    stored: int = 0
    """Parts stored so far."""
    stored_version: int = 0
    sending: bool = False
    ui_sent: float = 0.0
    """Monotonic time the last run view went to the user's dashboard."""
    ui_dirty: bool = False
    _encoded: dict[str, tuple[object, msgspec.Raw]] = field(default_factory=dict)
    _traded_floor: tuple[object, int] = (None, 0)
    """(a `snap.traded` dict, a lower bound of its oldest ts): see `_traded`."""
    """Snapshot field → (the value last encoded, its bytes): see `encode`."""

    def __post_init__(self) -> None:
        import fnmatch

        f = self.config.filters
        self.keys = frozenset(self.config.opportunity_keys)
        self.keys_present = frozenset(self.config.keys_present)
        self.venues = frozenset(f.venues)
        self.strategies = frozenset(f.strategies)
        if f.instruments:
            self.patterns = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in f.instruments))
        self.stored_version = self.snap.version

    @property
    def run_id(self) -> str:
        return self.config.run_id

    @property
    def user_id(self) -> str:
        return self.config.user_id

    @property
    def running(self) -> bool:
        return self.snap.state == "running"

    @property
    def finished(self) -> bool:
        """Over for good: stopped or completed, nothing awaiting settlement, every step stored."""
        return not self.running and not self.snap.pending and not self.parts and self.stored >= self.queued

    def view(self) -> RunView:
        return run_view(self.config, self.snap)

    def limits(self) -> RunLimits:
        """The engine's view of this run as of its current state."""
        s = self.snap
        return RunLimits(
            run_id=self.config.run_id,
            user_id=self.config.user_id,
            min_net_edge_micros=self.config.min_net_edge_micros,
            max_leg_micros=self.config.max_leg_micros,
            daily_cap_micros=self.config.daily_cap_micros,
            settlement_delay_ns=self.config.settlement_delay_ns,
            balance_micros=s.balance_micros,
            spent_by_day=s.spent_by_day,
            keys_present=self.keys_present,
            pending=len(s.pending),
            traded=s.traded,
        )

    def end_reason(self) -> str:
        return "duration" if self.config.duration_minutes > 0 else "max_duration"

    # -- which orders this run decides -------------------------------------------------------

    def watches(
        self,
        orders: Sequence[Intent | Opportunity],
        seqs: np.ndarray | None,
        ts: np.ndarray,
        last_seq: int,
        skip: Mapping[str, int] | None = None,
    ) -> np.ndarray:
        """Bool per order: this run decides it (see the module docstring). `seqs` None: orders from
        the hot path (no stream sequence yet); `skip`: order ids the run has already decided (its
        `snapshot.ahead`)."""
        cfg = self.config
        if len(orders) <= SMALL_BATCH:  # the hot path's one or two intents: numpy's per-call cost dominates
            seq_l = None if seqs is None else seqs.tolist()
            return np.array(
                [(seq_l is None or seq_l[i] > last_seq) and self.admits(o, skip) for i, o in enumerate(orders)],
                np.bool_,
            )
        m = (ts >= cfg.started_at) & (ts < cfg.ends_at)
        if seqs is not None:
            m &= seqs > last_seq
        if not self.running:
            m[:] = False
        if not m.any():
            return m
        if skip or self.keys or self.venues or self.strategies or self.patterns is not None:
            for i in np.flatnonzero(m).tolist():
                o = orders[i]
                m[i] = not (skip and o.id in skip) and self._matches(o)
        return m

    def admits(self, o: Intent | Opportunity, skip: Mapping[str, int] | None) -> bool:
        """`watches` for one order, its sequence aside."""
        cfg = self.config
        return (
            self.running and cfg.started_at <= o.ts < cfg.ends_at and not (skip and o.id in skip) and self._matches(o)
        )

    def _matches(self, o: Intent | Opportunity) -> bool:
        """The run's keys and filters admit this order."""
        if self.keys and o.opportunity_key not in self.keys:
            return False
        if self.strategies and o.strategy not in self.strategies:
            return False
        if self.venues and (not o.legs or not all(leg.venue in self.venues for leg in o.legs)):
            return False  # an order without legs trades on none of the run's venues
        return self.patterns is None or any(self.patterns.match(leg.instrument) for leg in o.legs)

    # -- steps: each is applied to `snap` at once and queued as a Part to be stored --------------

    def _queue(self, part: Part) -> Part:
        self.snap = part.snap
        self.parts.append(part)
        self.queued += 1
        return part

    def start_step(self) -> Part:
        """The first step: the run exists, with a `start` balance change crediting the starting cash."""
        cfg = self.config
        change = BalanceChange(
            id=f"{cfg.run_id}:start",
            ts=cfg.started_at,
            kind="start",
            amount_micros=cfg.starting_micros,
            balance_micros=cfg.starting_micros,
            pnl_micros=0,
        )
        return self._queue(Part(snap=self.snap, changes=(change,), ui_run=True))

    def decision_step(
        self,
        outcome: RunOutcome | None,
        *,
        source: str,
        last_seq: int,
        end: tuple[str, int] | None = None,
        ahead: dict[str, int] | None = None,
    ) -> Part:
        """Decisions (and their trades and fills) on a batch, then maybe the end of the run
        (`end` = (stop reason, stopped_at)) when an order at or past its end came by. `ahead`: the
        run's new `snapshot.ahead` (hot-path intents decided, or their JetStream copies reached)."""
        s = self.snap
        changes: list[BalanceChange] = []
        decisions: DecisionColumns | list[DecisionRow] | None = None
        trades: list = []
        values: dict = {} if ahead is None else {"ahead": ahead}
        if source == "intent":
            values["intent_seq"] = max(s.intent_seq, last_seq)
        else:
            values["opp_seq"] = max(s.opp_seq, last_seq)
        if outcome is not None:
            decisions = outcome.decisions
            trades = outcome.trades
            values["decisions"] = s.decisions + len(decisions)
            if trades or outcome.traded:
                self._fills(outcome, changes, values)
            elif outcome.balance_micros != s.balance_micros:  # nothing filled: nothing else moves
                raise AssertionError(f"run {self.run_id}: no trade, yet the engine moved the balance")
        if end is not None:
            values.update(state="completed", stop_reason=end[0], stopped_at=end[1])
        snap = msgspec.structs.replace(s, **values)
        return self._queue(Part(snap, decisions, tuple(trades), tuple(changes), ui_run=end is not None))

    def _fills(self, outcome: RunOutcome, changes: list[BalanceChange], values: dict) -> None:
        """A step's trades: their fills' balance changes (into `changes`) and the snapshot values
        they move (into `values`)."""
        s = self.snap
        trades = outcome.trades
        balance = s.balance_micros
        pending = list(s.pending) if trades else s.pending
        unsettled = s.unsettled_micros
        for t in trades:
            amount = t.cost_micros + t.fee_micros
            balance -= amount
            changes.append(
                BalanceChange(
                    id=f"{t.id}:fill",
                    ts=t.executed_at,
                    kind="fill",
                    trade_id=t.id,
                    amount_micros=-amount,
                    balance_micros=balance,
                    pnl_micros=s.pnl_micros,
                )
            )
            settlement = PendingSettlement(
                trade_id=t.id, settled_at=t.settled_at, payout_micros=t.payout_micros, pnl_micros=t.pnl_micros
            )
            bisect.insort(pending, settlement, key=_settled_at)  # kept in settlement order
            unsettled += t.payout_micros
        if balance != outcome.balance_micros:  # the kernel and the trades must agree to the micro-dollar
            raise AssertionError(
                f"run {self.run_id}: balance {balance} from the trades, {outcome.balance_micros} from the engine"
            )
        if outcome.traded:
            known = self._traded_floor
            traded, floor = _traded(s.traded, outcome.traded, known[1] if known[0] is s.traded else None)
            values["traded"], self._traded_floor = traded, (traded, floor)
        values.update(
            balance_micros=balance,
            fees_micros=s.fees_micros + outcome.fees_micros,
            exposure_micros=s.exposure_micros + outcome.exposure_micros,
            unsettled_micros=unsettled,
            taken=s.taken + outcome.taken,
            trades=s.trades + len(trades),
            broken=s.broken + outcome.broken,
            spent_by_day=outcome.spent_by_day,
            pending=pending,
        )

    def reach(self, last_seq: int, ahead: dict[str, int]) -> None:
        """The intent consumer reached JetStream copies of intents this run decided on the hot path
        (and nothing else to decide): its snapshot forgets them and moves `intent_seq` past them. Not
        a step of its own: the next stored step carries it (until then the stored snapshot still
        lists them in `ahead`, which is as true)."""
        self.snap = msgspec.structs.replace(self.snap, intent_seq=max(self.snap.intent_seq, last_seq), ahead=ahead)

    def forget_traded(self, opportunity_ids: Iterable[str]) -> bool:
        """Those opportunities closed: the run forgets it traded them (`snapshot.traded`), so the
        snapshot stays small; True when it had traded any. A new opening of the same key gets a new
        opportunity id, so forgetting a closed one is safe once no intent of it is still to be
        decided (an intent of a forgotten id would be taken again). Not a step of its own, like
        `reach`: the next stored step carries it."""
        traded = self.snap.traded
        gone = [o for o in opportunity_ids if o in traded] if traded else []
        if not gone:
            return False
        kept = dict(traded)
        for o in gone:
            kept.pop(o, None)
        if self._traded_floor[0] is traded:  # fewer ids: the old bound is still a lower bound
            self._traded_floor = (kept, self._traded_floor[1])
        self.snap = msgspec.structs.replace(self.snap, traded=kept)
        return True

    def stop_step(self, *, state: str, reason: str, stopped_at: int) -> Part:
        """The run stops (requested) or completes (duration, max_duration)."""
        snap = msgspec.structs.replace(self.snap, state=state, stop_reason=reason, stopped_at=stopped_at)
        return self._queue(Part(snap, ui_run=True))

    def settle_step(self, now: int) -> Part | None:
        """Settle every pending trade whose settled_at has passed (None when none has)."""
        s = self.snap
        if not s.pending or s.pending[0].settled_at > now:
            return None
        due = [p for p in s.pending if p.settled_at <= now]
        rest = [p for p in s.pending if p.settled_at > now]
        balance, pnl, unsettled = s.balance_micros, s.pnl_micros, s.unsettled_micros
        changes = []
        for p in due:
            balance += p.payout_micros
            pnl += p.pnl_micros
            unsettled -= p.payout_micros
            changes.append(
                BalanceChange(
                    id=f"{p.trade_id}:settle",
                    ts=p.settled_at,
                    kind="settle",
                    trade_id=p.trade_id,
                    amount_micros=p.payout_micros,
                    balance_micros=balance,
                    pnl_micros=pnl,
                )
            )
        snap = msgspec.structs.replace(
            s, balance_micros=balance, pnl_micros=pnl, unsettled_micros=unsettled, pending=rest
        )
        return self._queue(Part(snap, changes=tuple(changes), ui_run=True))

    # -- storing ---------------------------------------------------------------------------------

    def next_update(self, now: int) -> tuple[RunUpdate, int]:
        """The next RunUpdate to store: the oldest queued parts combined (up to MAX_UPDATE_DECISIONS
        decisions, at least one part), with the snapshot after the last of them; and how many parts."""
        take, n = 0, 0
        for part in self.parts:
            k = len(part.decisions) if part.decisions is not None else 0
            if take and n + k > MAX_UPDATE_DECISIONS:
                break
            take += 1
            n += k
        parts = self.parts[:take]
        version = self.stored_version + 1
        snap = msgspec.structs.replace(parts[-1].snap, version=version)
        decisions = concat_decisions([p.decisions for p in parts if p.decisions is not None])
        trades = [t for p in parts for t in p.trades]
        changes = [c for p in parts for c in p.changes]
        ids = [snap.state, snap.stop_reason, *decisions.id, *(c.id for c in changes)]
        update = RunUpdate(
            id=update_id(self.run_id, version, ids),
            ts=now,
            run=self.config,
            snapshot=snap,
            decisions=decisions,
            trades=trades,
            balance_changes=changes,
        )
        return update, take

    def encode(self, update: RunUpdate) -> bytes:
        """`update` as stored (MessagePack; decodes as a RunUpdate). The snapshot's `pending` and
        `traded` grow with the run's trades, and most steps change neither: each is encoded once
        per new value (a snapshot's collections are never changed in place, so the same object is
        the same value) instead of in every update."""
        s = update.snapshot
        wire = _WireSnapshot(
            **{f: getattr(s, f) for f in _PLAIN_FIELDS},
            pending=self._encoded_field("pending", s.pending),
            traded=self._encoded_field("traded", s.traded),
        )
        return codec.encode(msgspec.structs.replace(update, snapshot=wire))

    def _encoded_field(self, name: str, value: object) -> msgspec.Raw:
        hit = self._encoded.get(name)
        if hit is not None and hit[0] is value:  # the cache holds the object, so its identity is not reused
            return hit[1]
        raw = msgspec.Raw(codec.encode(value))
        self._encoded[name] = (value, raw)
        return raw

    def mark_stored(self, update: RunUpdate, parts: int) -> list[Part]:
        """The update of the `parts` oldest parts is stored: drop them; returns them."""
        done, self.parts = self.parts[:parts], self.parts[parts:]
        self.stored += parts
        self.stored_version = update.snapshot.version
        if self.snap.version < self.stored_version:
            self.snap = msgspec.structs.replace(self.snap, version=self.stored_version)
        return done


def _settled_at(p: PendingSettlement) -> int:
    return p.settled_at
