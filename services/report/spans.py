"""The success-span report: the simulator's trades against the success spans detect saw.

`GET /simulator/report?hours=24&max_gap_s=120&min_edge_cents=3` answers "of the opportunities
that were really there, how many did my runs catch, why did they miss the others, and how much
of the edge on the table did they take". Pure functions over rows read from ClickHouse
(services/report/simulator_queries.py reads them), so the rules below are unit-tested on
hand-made rows.

Rules (all times are market time, UTC ns, as detect stamps `opened_at`/`closed_at` and paper
stamps `executed_at`; the window ends at `to`, by default now, and starts `hours` before):

- **Opportunity**: the lifecycle rows (opened/updated/closed) of one `opportunity_id` read for the
  window (see "In the window"). Its peak edge is the highest `net_edge_per_contract_micros` of
  them, its available edge the highest `net_edge_micros` (the whole edge at the size detect
  priced). It ends at its `closed_at`; one not closed yet (as of `to`) is still open and ends
  at the window end.
- **Qualifying**: an opportunity whose peak edge per contract is ≥ `min_edge_cents`. Others are
  left out before merging (a sub-threshold flicker neither counts nor bridges two spans).
- **Span**: qualifying opportunities of the same `opportunity_key`, in opening order, merged while
  the next one opens at most `max_gap_s` after the span so far ends (overlaps merge too): detect
  closing and re-opening the same pair a moment later is one opportunity to the trader. A merged
  span's peak is its opportunities' highest peak, and its available edge the highest available
  edge among them (the edge was on the table once, not once per flicker).
- **In the window**: a span that ends at or after the window start and opens at or before its
  end. Lifecycle rows (by their market time `book_ts`) from `max_gap_s` before the start up to
  `to` are read, so a span straddling the start is merged whole, and nothing after `to` counts:
  a later update does not raise a peak and a later close leaves the opportunity open as of `to`.
- **Caught**: one of the user's trades links to the span: its `opportunity_id` is one of the
  span's, or (a trade without that link: no opportunity id, or one the opportunities table does not
  hold) its `opportunity_key` is the span's and it executed within [opened_at, end + max_gap_s].
  A trade counts for one span at most; a trade on a known opportunity that did not qualify
  catches nothing. A span's captured edge is that of its **best single run**: per run, the Σ
  `pnl_micros` of the run's trades on the span (a broken pair's loss included: that is what was
  taken), and the highest of those (`captured_run_id` names that run). Runs are alternatives
  (each is a what-if with its own virtual balance, often on the same intents), not parts of
  one trader: summing them would count the same edge once per run and could exceed what was
  available. One run can still exceed 100% of a span when it traded it several times as
  the book refilled (a span's available edge is Σ over its merged opportunities of each one's
  best moment, at detect's size). `trade_ids`
  lists every run's trades on the span. `run_id=` restricts the report to one run.
- **Missed, and why** (one reason per span, from the user's decisions on its opportunity ids):
  1. the user's runs made no decision on it at all → `no run watching` (no run was running, none
     watched the key, or the run's filters excluded it);
  2. intent decisions that were skipped → their most frequent reason (`min_net_edge`,
     `balance`, `daily_cap`, `liquidity`, `exchange_validation`, …; a tie goes to the check that
     runs first, `libs.paper.views.CHECK_RUN_ORDER`);
  3. detect emitted no intent for it (no intent row and no intent decision) → `no intent` (the
     edge never crossed detect's threshold, or it closed first);
  4. success-span decisions that were skipped (while intents existed) → their most frequent reason;
  5. a decision was taken but no trade is stored (yet) → `trade not recorded`;
  6. otherwise (intents existed, a run saw the span start but decided none of them, e.g. it
     stopped first) → `not decided`.
  Each span also carries every reason its decisions gave, with counts (`decision_reasons`).
- **Totals**: `edge_available_usd` = Σ available over the spans, `edge_captured_usd` = Σ
  captured over caught spans (each span's best run, which may differ from span to span; with
  `run_id=` it is that run's), `capture_pct` = captured / available × 100 (0 when nothing was
  available), `missed_by_reason` counts missed spans by their reason. The `spans` list is newest
  first and cut to `limit`; the totals always cover every span.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import msgspec

from libs.paper.views import CHECK_RUN_ORDER, cents, iso, usd

NO_RUN = "no run watching"
NO_INTENT = "no intent"
NOT_RECORDED = "trade not recorded"
NOT_DECIDED = "not decided"
_NOT_FAILURES = frozenset({"taken", "eligible", ""})
"""Decision reasons that are not a failed check."""
_CHECK_ORDER = {name: i for i, name in enumerate(CHECK_RUN_ORDER)}


class OppRow(msgspec.Struct, frozen=True, kw_only=True):
    """One opportunity's lifecycle rows folded into one (see the module docstring)."""

    opportunity_id: str
    opportunity_key: str
    opened_at: int
    closed_at: int | None
    """None: no `closed` row yet."""
    last_ts: int
    """Market time of its latest row (book_ts)."""
    peak_edge_per_contract_micros: int
    peak_net_edge_micros: int


class TradeRow(msgspec.Struct, frozen=True, kw_only=True):
    """What the report needs of one of the user's trades."""

    trade_id: str
    run_id: str = ""
    opportunity_id: str
    opportunity_key: str
    executed_at: int
    pnl_micros: int


class DecisionRow(msgspec.Struct, frozen=True, kw_only=True):
    """What the report needs of one of the user's decisions."""

    opportunity_id: str
    source: str
    taken: bool
    reason: str


class Span(msgspec.Struct, kw_only=True):
    """One merged success span while it is being built (times in ns, money in micro-dollars)."""

    opportunity_key: str
    opportunity_ids: list[str]
    opened_at: int
    end: int
    open: bool
    """At least one of its opportunities has no closed row."""
    peak_edge_per_contract_micros: int
    available_micros: int
    trade_ids: list[str] = msgspec.field(default_factory=list)
    by_run: dict[str, int] = msgspec.field(default_factory=dict)
    """run_id -> Σ pnl_micros of that run's trades on the span."""
    reason: str = ""
    decision_reasons: dict[str, int] = msgspec.field(default_factory=dict)

    @property
    def caught(self) -> bool:
        return bool(self.trade_ids)

    def add_trade(self, trade: TradeRow) -> None:
        self.trade_ids.append(trade.trade_id)
        self.by_run[trade.run_id] = self.by_run.get(trade.run_id, 0) + trade.pnl_micros

    @property
    def best_run(self) -> str | None:
        """The run that captured the most of the span (ties: the smallest run id); None when not caught."""
        if not self.by_run:
            return None
        return min(self.by_run, key=lambda r: (-self.by_run[r], r))

    @property
    def captured_micros(self) -> int:
        """The best single run's capture (module docstring); 0 when not caught."""
        best = self.best_run
        return 0 if best is None else self.by_run[best]


class SpanView(msgspec.Struct, frozen=True, kw_only=True):
    """A span as the API shows it."""

    opportunity_key: str
    opportunity_ids: list[str]
    opened_at: str
    closed_at: str | None
    """None while still open."""
    duration_s: float
    peak_edge_cents: float
    available_usd: float
    caught: bool
    trade_ids: list[str]
    captured_usd: float
    """The best single run's capture on this span."""
    captured_run_id: str | None
    """That run (None when not caught)."""
    reason: str
    """'' when caught; else why it was missed."""
    decision_reasons: dict[str, int]


class Window(msgspec.Struct, frozen=True, kw_only=True):
    hours: float
    max_gap_s: float
    min_edge_cents: float
    from_: str = msgspec.field(name="from")
    to: str
    run_id: str | None = None
    """The one run the report is restricted to, or None: all the user's runs."""


class SpanReport(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /simulator/report`."""

    window: Window
    spans_total: int
    caught: int
    missed: int
    missed_by_reason: dict[str, int]
    edge_available_usd: float
    edge_captured_usd: float
    capture_pct: float
    spans: list[SpanView]
    spans_listed: int
    """How many spans `spans` holds (all, or the newest `limit`)."""


def span_end(opp: OppRow, to_ns: int) -> int:
    """When an opportunity ends: its close, or for one still open the window end (or its last update if later)."""
    return opp.closed_at if opp.closed_at is not None else max(to_ns, opp.last_ts)


def merge_spans(opps: Iterable[OppRow], *, min_edge_micros: int, max_gap_ns: int, to_ns: int) -> list[Span]:
    """Qualifying opportunities merged into spans per key (gap ≤ max_gap_ns), ordered by (opened_at, key)."""
    by_key: dict[str, list[OppRow]] = {}
    for o in opps:
        if o.peak_edge_per_contract_micros >= min_edge_micros:
            by_key.setdefault(o.opportunity_key, []).append(o)
    spans: list[Span] = []
    for key, rows in by_key.items():
        rows.sort(key=lambda o: (o.opened_at, o.opportunity_id))
        current: Span | None = None
        for o in rows:
            end = span_end(o, to_ns)
            if current is not None and o.opened_at - current.end <= max_gap_ns:
                current.opportunity_ids.append(o.opportunity_id)
                current.end = max(current.end, end)
                current.open = current.open or o.closed_at is None
                current.peak_edge_per_contract_micros = max(
                    current.peak_edge_per_contract_micros, o.peak_edge_per_contract_micros
                )
                current.available_micros += o.peak_net_edge_micros  # each opportunity was a chance of its own
                continue
            current = Span(
                opportunity_key=key,
                opportunity_ids=[o.opportunity_id],
                opened_at=o.opened_at,
                end=end,
                open=o.closed_at is None,
                peak_edge_per_contract_micros=o.peak_edge_per_contract_micros,
                available_micros=o.peak_net_edge_micros,
            )
            spans.append(current)
    spans.sort(key=lambda s: (s.opened_at, s.opportunity_key))
    return spans


def in_window(spans: Iterable[Span], from_ns: int, to_ns: int) -> list[Span]:
    """The spans that overlap [from_ns, to_ns]."""
    return [s for s in spans if s.end >= from_ns and s.opened_at <= to_ns]


def attach_trades(spans: Sequence[Span], trades: Iterable[TradeRow], max_gap_ns: int, known_ids: set[str]) -> None:
    """Give each span the trades that caught it: by opportunity id, else by key and time.

    The key-and-time link is only for trades whose opportunity id is empty or not in `known_ids`
    (every opportunity read, qualifying or not). A trade counts once. Mutates the spans.
    """
    by_id = {oid: s for s in spans for oid in s.opportunity_ids}
    by_key: dict[str, list[Span]] = {}
    for s in spans:
        by_key.setdefault(s.opportunity_key, []).append(s)
    rest: list[TradeRow] = []
    for t in sorted(trades, key=lambda t: (t.executed_at, t.trade_id)):
        span = by_id.get(t.opportunity_id) if t.opportunity_id else None
        if span is None:
            if not t.opportunity_id or t.opportunity_id not in known_ids:
                rest.append(t)
            continue
        span.add_trade(t)
    for t in rest:
        for span in by_key.get(t.opportunity_key, ()):
            if span.opened_at <= t.executed_at <= span.end + max_gap_ns:
                span.add_trade(t)
                break


def _top(reasons: Counter[str]) -> str:
    """The most frequent reason; ties go to the check that runs first, then alphabetically."""
    return min(reasons, key=lambda r: (-reasons[r], _CHECK_ORDER.get(r, len(_CHECK_ORDER)), r))


def why_missed(span: Span, decisions: Sequence[DecisionRow], intent_opportunity_ids: set[str]) -> str:
    """The reason a span without trades was missed, from the user's decisions on it (module docstring)."""
    if not decisions:
        return NO_RUN
    intent_fail: Counter[str] = Counter()
    span_fail: Counter[str] = Counter()
    for d in decisions:
        if not d.taken and d.reason not in _NOT_FAILURES:
            (intent_fail if d.source == "intent" else span_fail)[d.reason] += 1
    if intent_fail:
        return _top(intent_fail)
    had_intent = any(d.source == "intent" for d in decisions) or any(
        oid in intent_opportunity_ids for oid in span.opportunity_ids
    )
    if not had_intent:
        return NO_INTENT
    if span_fail:
        return _top(span_fail)
    if any(d.taken for d in decisions):
        return NOT_RECORDED
    return NOT_DECIDED


def explain(spans: Sequence[Span], decisions: Iterable[DecisionRow], intent_opportunity_ids: set[str]) -> None:
    """Fill each span's `decision_reasons`, and `reason` for the missed ones. Mutates the spans."""
    by_opp: dict[str, list[DecisionRow]] = {}
    for d in decisions:
        by_opp.setdefault(d.opportunity_id, []).append(d)
    for span in spans:
        mine = [d for oid in span.opportunity_ids for d in by_opp.get(oid, ())]
        span.decision_reasons = dict(sorted(Counter(d.reason for d in mine).items()))
        span.reason = "" if span.caught else why_missed(span, mine, intent_opportunity_ids)


def span_view(s: Span) -> SpanView:
    return SpanView(
        opportunity_key=s.opportunity_key,
        opportunity_ids=list(s.opportunity_ids),
        opened_at=iso(s.opened_at) or "",
        closed_at=None if s.open else iso(s.end),
        duration_s=(s.end - s.opened_at) / 1e9,
        peak_edge_cents=cents(s.peak_edge_per_contract_micros),
        available_usd=usd(s.available_micros),
        caught=s.caught,
        trade_ids=list(s.trade_ids),
        captured_usd=usd(s.captured_micros),
        captured_run_id=s.best_run,
        reason=s.reason,
        decision_reasons=s.decision_reasons,
    )


def build_report(
    opps: Iterable[OppRow],
    trades: Iterable[TradeRow],
    decisions: Iterable[DecisionRow],
    intent_opportunity_ids: set[str],
    *,
    hours: float,
    max_gap_s: float,
    min_edge_cents: float,
    to_ns: int,
    limit: int,
    run_id: str | None = None,
) -> SpanReport:
    """The whole report from the rows (see the module docstring for every rule)."""
    from_ns = to_ns - round(hours * 3600e9)
    max_gap_ns = round(max_gap_s * 1e9)
    min_edge_micros = round(min_edge_cents * 10_000)
    opps = list(opps)
    spans = in_window(
        merge_spans(opps, min_edge_micros=min_edge_micros, max_gap_ns=max_gap_ns, to_ns=to_ns), from_ns, to_ns
    )
    attach_trades(spans, trades, max_gap_ns, {o.opportunity_id for o in opps})
    explain(spans, decisions, intent_opportunity_ids)
    caught = [s for s in spans if s.caught]
    available = sum(s.available_micros for s in spans)
    captured = sum(s.captured_micros for s in caught)
    missed = Counter(s.reason for s in spans if not s.caught)
    newest = sorted(spans, key=lambda s: (s.opened_at, s.opportunity_key), reverse=True)[:limit]
    return SpanReport(
        window=Window(
            hours=hours,
            max_gap_s=max_gap_s,
            min_edge_cents=min_edge_cents,
            from_=iso(from_ns) or "",
            to=iso(to_ns) or "",
            run_id=run_id,
        ),
        spans_total=len(spans),
        caught=len(caught),
        missed=len(spans) - len(caught),
        missed_by_reason=dict(sorted(missed.items(), key=lambda kv: (-kv[1], kv[0]))),
        edge_available_usd=usd(available),
        edge_captured_usd=usd(captured),
        capture_pct=round(100 * captured / available, 4) if available > 0 else 0.0,
        spans=[span_view(s) for s in newest],
        spans_listed=len(newest),
    )
