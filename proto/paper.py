"""Paper trading (the dry-run execution simulator): run updates on the bus, the paper service's
request/reply API, and the HTTP API's request and response shapes.

A run is one user's simulator session. Its fixed settings are a `RunConfig`; its moving state a
`RunSnapshot`. Every change to a run goes out as one `RunUpdate` on `paper.update.<run_id>`
carrying the decisions, trades and balance changes of that step *and* the snapshot after it: one
message is one atomic step, so a restarted paper service resumes from the last update of each run
and never applies a step twice (see services/paper/service.py).

Money on the bus is integer micro-dollars (`proto.units`); the HTTP API shows USD as numbers
(`*_usd`, exact to the micro-dollar) and edges in cents, as the reference simulator does.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from proto.events import DecisionSource, Event, PaperTrade, RunState

CHECKS: tuple[str, ...] = (
    "has_orders",
    "hedged_pair",
    "min_net_edge",
    "instrument_ids",
    "exchange_keys",
    "exchange_validation",
    "max_leg",
    "balance",
    "daily_cap",
    "liquidity",
    "fill_edge",
    "untraded_opportunity",
)
"""Every safety check. The tuple fixes the bit positions: a decision records, as bit masks over it,
which checks ran and which passed, and the first failure is the decision's `reason` (new checks are
appended, so a stored mask keeps its meaning). The kernel runs them in this order except
`untraded_opportunity`, which runs right after `min_net_edge` (`libs.paper.views.CHECK_RUN_ORDER`)."""
CHECK_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(CHECKS)}

StopReason = Literal["", "requested", "disabled", "duration", "max_duration"]
"""Why a run stopped: on request, at its `duration_minutes`, or at the hard 7-day cap."""
BalanceKind = Literal["start", "fill", "settle"]
TradeStatus = Literal["queued", "executed", "settled"]
Validation = Literal["off", "bus", "live"]


class RunFilters(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which intents a run watches, beyond its opportunity keys. Empty lists mean any."""

    venues: list[str] = []
    """Every leg's venue must be one of these."""
    strategies: list[str] = []
    instruments: list[str] = []
    """fnmatch patterns; at least one leg's instrument id must match one."""
    min_net_edge_cents: float | None = None
    """A stricter minimum than the user's profile for this run only."""


class RunConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What a run was started with: fixed for its life."""

    run_id: str
    user_id: str
    label: str = ""
    notes: str = ""
    opportunity_keys: list[str] = []
    """Empty: every opportunity."""
    filters: RunFilters = RunFilters()
    starting_micros: int
    min_net_edge_micros: int
    max_leg_micros: int
    daily_cap_micros: int
    settlement_delay_ns: int
    duration_minutes: float = 0.0
    """0: until stopped (the hard cap still applies)."""
    started_at: int
    ends_at: int
    """started_at + duration, or + the hard cap when that comes first or no duration was given."""
    validation: Validation = "bus"
    keys_present: list[str] = []
    """Venues the user had exchange keys for when the run started (never the keys themselves)."""


class PendingSettlement(msgspec.Struct, frozen=True, kw_only=True):
    """A trade executed but not yet settled: what its settlement will credit."""

    trade_id: str
    settled_at: int
    payout_micros: int
    pnl_micros: int


class RunSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A run's moving state after one step. `version` counts steps (the table keeps the highest)."""

    version: int
    state: RunState
    stop_reason: StopReason = ""
    stopped_at: int | None = None
    balance_micros: int
    """Cash: starting − (cost + fees) of every fill + payouts of settled trades."""
    pnl_micros: int = 0
    """Realised: Σ pnl of settled trades (a broken pair's unhedged contracts count as lost)."""
    fees_micros: int = 0
    exposure_micros: int = 0
    """Cost + fees of the unhedged contracts of every broken pair so far (cumulative: the simulator
    never closes naked contracts, and P&L counts them as lost)."""
    unsettled_micros: int = 0
    """Payouts of executed trades awaiting settlement."""
    decisions: int = 0
    taken: int = 0
    trades: int = 0
    broken: int = 0
    spent_by_day: dict[int, int] = {}
    """UTC day number (market time) → cost + fees spent that day, for the daily cap."""
    pending: list[PendingSettlement] = []
    intent_seq: int = 0
    """Stream sequence of the last intent this run has decided (INTENT stream)."""
    opp_seq: int = 0
    """Stream sequence of the last opportunity event this run has decided (OPP stream)."""
    ahead: dict[str, int] = {}
    """Intents this run decided as they came over core NATS (the hot path) whose JetStream copy it
    has not reached yet: intent id → intent ts. Every intent the run decided is at or below
    `intent_seq` or in here, so a restart redelivering one skips it."""
    traded: dict[str, int] = {}
    """Open opportunities this run has traded: opportunity id → ts (ns) of the intent whose trade
    took it. One trade per opportunity opening (the `untraded_opportunity` check): paper fills never
    consume the books, so a later, better intent of the same opening (detect sends one at every new
    0.01c of edge) would count the same book liquidity again. An id is forgotten when its
    opportunity closes (`PaperRun.forget_traded`) or a day after its trade by the newest trade's
    ts (`services.paper.runs.TRADED_MAX_AGE_NS`), and at most `services.paper.runs.MAX_TRADED`
    (10,000) are kept, the oldest by ts dropped first."""


class DecisionColumns(msgspec.Struct, frozen=True, kw_only=True):
    """A run's decisions in one step, column by column (every list has one entry per decision).

    `id` is `<run_id>:<intent_id>` for an intent and `<run_id>:span:<opportunity_id>` for a
    success-span start: one decision per (run, intent or span), so a redelivery cannot add one.
    """

    id: list[str] = []
    ts: list[int] = []
    source: list[DecisionSource] = []
    intent_id: list[str] = []
    """'' for a success-span decision."""
    opportunity_id: list[str] = []
    opportunity_key: list[str] = []
    taken: list[bool] = []
    reason: list[str] = []
    """'taken', 'eligible' (a span start that passed every check it ran) or the failing check."""
    checks_run: list[int] = []
    checks_passed: list[int] = []
    detail: list[str] = []
    """The failing check's detail (naming values), or a one-line summary of what was taken."""
    net_edge_per_contract_micros: list[int] = []
    size: list[int] = []
    """Contracts after the max-leg cut (0 when that check was not reached)."""
    intent_ts: list[int] = []
    book_ts: list[int] = []
    trade_id: list[str] = []

    def __len__(self) -> int:
        return len(self.id)


class BalanceChange(msgspec.Struct, frozen=True, kw_only=True):
    """One movement of a run's cash, with the balance and realised P&L after it."""

    id: str
    """`<run_id>:start`, `<trade_id>:fill`, `<trade_id>:settle`: deterministic, so never doubled."""
    ts: int
    kind: BalanceKind
    trade_id: str = ""
    amount_micros: int
    balance_micros: int
    pnl_micros: int


class RunUpdate(Event, kw_only=True, tag="paper.update.v1"):
    """One atomic step of one run, on `paper.update.<run_id>`: its decisions, trades and cash
    movements, and the run's state after them. The recorder fans it out into `decisions`,
    `paper_trades`, `paper_balance_changes` and `paper_runs`."""

    run: RunConfig
    snapshot: RunSnapshot
    decisions: DecisionColumns = DecisionColumns()
    trades: list[PaperTrade] = msgspec.field(default_factory=list)
    balance_changes: list[BalanceChange] = msgspec.field(default_factory=list)


# -- the paper service's request/reply API (svc.paper.<verb>), used by the HTTP API ---------------


class StartRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /simulator/start` body (field names as in the reference simulator)."""

    starting_usd: float
    opportunity_key: str | None = None
    opportunity_keys: list[str] | None = None
    """One key, a list, or neither (every opportunity)."""
    duration_minutes: float | None = None
    """0 or omitted: until stopped, with the hard 7-day maximum; more than 7 days is refused."""
    label: str = ""
    notes: str = ""
    filters: RunFilters | None = None


class StopRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /simulator/stop` body: a run id, or none for the user's most recently started run."""

    run_id: str | None = None


class StartRun(msgspec.Struct, frozen=True, kw_only=True):
    """svc.paper.start: the HTTP layer has authenticated the user and read their profile."""

    user_id: str
    request: StartRequest
    min_net_edge_micros: int
    max_leg_micros: int
    daily_cap_micros: int
    keys_present: list[str] = []


class StopRun(msgspec.Struct, frozen=True, kw_only=True):
    """svc.paper.stop."""

    user_id: str
    run_id: str | None = None
    reason: Literal["requested", "disabled"] = "requested"
    """`disabled`: an admin disabled the user (the run's stop_reason says so)."""


class UserQuery(msgspec.Struct, frozen=True, kw_only=True):
    """svc.paper.active: the user's running runs, live from the paper service."""

    user_id: str


# -- HTTP response shapes ---------------------------------------------------------------------


class RunView(msgspec.Struct, frozen=True, kw_only=True):
    """A run as the API shows it."""

    run_id: str
    label: str
    notes: str
    status: RunState
    stop_reason: StopReason
    opportunity_keys: list[str]
    filters: RunFilters
    starting_usd: float
    balance_usd: float
    pnl_usd: float
    fees_usd: float
    exposure_usd: float
    unsettled_usd: float
    trade_count: int
    decision_count: int
    taken_count: int
    broken_count: int
    min_net_edge_cents: float
    max_leg_usd: float
    daily_cap_usd: float
    settlement_delay_s: float
    duration_minutes: float
    validation: Validation
    started_at: str
    ends_at: str
    stopped_at: str | None


class PaperReply(msgspec.Struct, frozen=True, kw_only=True):
    """Every svc.paper.* reply: HTTP-like status, a detail naming what was wrong, the runs touched."""

    status: int = 200
    detail: str = ""
    runs: list[RunView] = []


class LegView(msgspec.Struct, frozen=True, kw_only=True):
    venue: str
    instrument: str
    outcome: str
    side: str
    requested_size: int
    matched_size: int
    fill_pct: float
    """matched_size / requested_size as a percent, 0-100 (100.0 = filled in full), not a fraction."""
    avg_price: float | None
    worst_price: float | None
    cost_usd: float
    fee_usd: float


class TradeView(msgspec.Struct, frozen=True, kw_only=True):
    """A simulated trade; `status` derives from executed_at/settled_at and the time of asking."""

    trade_id: str
    run_id: str
    intent_id: str
    decision_id: str
    opportunity_key: str
    status: TradeStatus
    requested_size: int
    matched_size: int
    fill_pct: float
    """matched_size / requested_size as a percent, 0-100 (100.0 = filled in full), not a fraction."""
    broken: bool
    unhedged_size: int
    exposure_usd: float
    cost_usd: float
    fees_usd: float
    payout_usd: float
    pnl_usd: float
    executed_at: str
    settled_at: str
    settlement_delay_s: float
    legs: list[LegView]


class CheckView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    passed: bool
    detail: str = ""


class DecisionView(msgspec.Struct, frozen=True, kw_only=True):
    decision_id: str
    run_id: str
    decision_source: DecisionSource
    intent_id: str
    opportunity_id: str
    opportunity_key: str
    taken: bool
    reason: str
    detail: str
    checks: list[CheckView]
    net_edge_cents: float
    size: int
    decided_at: str
    trade_id: str


class ApiError(msgspec.Struct, frozen=True, kw_only=True):
    """Every HTTP error body."""

    detail: str


class ProfileUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`PUT /profile`: the user's thresholds (fields left out keep their value)."""

    min_net_edge_cents: float | None = None
    max_leg_usd: float | None = None
    daily_cap_usd: float | None = None


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /profile`: thresholds, and which venues have keys (never the keys)."""

    user_id: str
    name: str
    min_net_edge_cents: float
    max_leg_usd: float
    daily_cap_usd: float
    exchange_keys: dict[str, list[str]] = {}
    """venue → the names of the fields stored for it (e.g. ["api_key", "private_key"])."""


class KalshiSecrets(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`PUT /profile/secrets/kalshi`: `api_key` and one of `private_key` (PEM) or `private_key_path`."""

    api_key: str
    private_key: str | None = None
    private_key_path: str | None = None
    use_demo: bool = False
    host: str = ""


class PolymarketSecrets(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`PUT /profile/secrets/polymarket`: the wallet key; optional funder (proxy) address and host."""

    private_key: str
    funder: str = ""
    host: str = ""
