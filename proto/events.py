"""The events MarketTwin services exchange over NATS, as msgspec Structs.

Every event is frozen, keyword-only and tagged with a versioned `type` ("book.v1"), has an
`id` and a `ts` (UTC nanoseconds when it was made). New fields get defaults; a changed
meaning gets a new tag. Money is integer: see `proto.units`.

Binary markets are quoted in YES terms: an instrument's book lists YES bids and YES asks.
Buying NO at q is selling YES at 1 - q, so the NO asks are the YES bids reflected.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Outcome = Literal["yes", "no"]
Side = Literal["buy", "sell"]
OppStatus = Literal["opened", "updated", "closed"]
DecisionSource = Literal["intent", "success_span"]
RunState = Literal["running", "stopped", "completed"]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event: a unique id and the UTC nanosecond time it was made."""

    id: str
    ts: int


class BookBatch(Event, kw_only=True, tag="book.v1"):
    """Many order-book updates in one message, column by column.

    Row r is the top `levels` of instrument `instruments[inst_idx[r]]` at `book_ts[r]`,
    replacing what came before for that instrument (snapshot semantics, so a lost
    message never leaves a book wrong for longer than one update). Level arrays are
    flattened row-major, `levels` entries per row, best first; size 0 marks an empty level.
    """

    venue: str
    source: str
    levels: int
    instruments: list[str]
    inst_idx: list[int]
    book_ts: list[int]
    bid_px: list[int]
    bid_sz: list[int]
    ask_px: list[int]
    ask_sz: list[int]
    sync_id: str = ""
    """Batches describing the same instants on several venues (a recorded snapshot of both
    venues, the synthetic market) share a sync_id, so consumers can apply them together."""
    sync_count: int = 0
    """How many batches carry this sync_id (0: not part of a group)."""

    @property
    def rows(self) -> int:
        """Number of book updates carried."""
        return len(self.book_ts)


class TradeBatch(Event, kw_only=True, tag="trade.v1"):
    """Many market trades in one message, column by column (YES terms)."""

    venue: str
    source: str
    instruments: list[str]
    inst_idx: list[int]
    trade_ts: list[int]
    px: list[int]
    size: list[int]
    aggressor: list[int]
    """+1 when the buyer took liquidity, -1 when the seller did, 0 when unknown."""

    @property
    def rows(self) -> int:
        """Number of trades carried."""
        return len(self.trade_ts)


Timeframe = Literal["1min", "5min", "15min", "30min", "1h", "2h", "4h", "daily"]
TIMEFRAMES: tuple[str, ...] = ("1min", "5min", "15min", "30min", "1h", "2h", "4h", "daily")


class BarBatch(Event, kw_only=True, tag="bar.v1"):
    """Many OHLCV bars of one timeframe in one message, column by column.

    `bar_ts` is each bar's open time (UTC ns; a daily bar: its session date at 00:00 UTC).
    Prices and volume are floats: bars are analytics data quoted as the provider gives them
    (a forex rate needs 5 decimals, a crypto volume is fractional), not money an engine moves.
    """

    venue: str
    source: str
    timeframe: Timeframe
    instruments: list[str]
    inst_idx: list[int]
    bar_ts: list[int]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float]

    @property
    def rows(self) -> int:
        """Number of bars carried."""
        return len(self.bar_ts)


class RawBatch(Event, kw_only=True, tag="raw.v1"):
    """Venue responses exactly as received (HTTP body or websocket frame), for recording.

    Replaying a recording re-parses these bodies with the live parser, so a replay puts the
    same book events on the bus the live feed did.
    """

    venue: str
    source: str
    recv_ts: list[int]
    endpoint: list[str]
    """What was asked: `GET /book?token_id=…` for HTTP, the channel name for a websocket."""
    status: list[int]
    """HTTP status (0 for a websocket frame)."""
    body: list[bytes]

    @property
    def rows(self) -> int:
        """Number of responses carried."""
        return len(self.recv_ts)


class TickRange(msgspec.Struct, frozen=True, kw_only=True):
    """Prices in [start, end] (units of 1/PRICE_SCALE USD) trade on a grid of `step`."""

    start: int
    end: int
    step: int


class MarketInfo(Event, kw_only=True, tag="market.info.v1"):
    """What a venue says about one instrument: title, status, tick grid, minimum order, fee schedule.

    Published by the live source at setup and whenever it changes, on `md.info.<venue>.<instrument>`
    (the instrument is the one its books go out under). Unknown facts stay at their defaults.
    Fees: Polymarket takers pay `C × taker_fee_rate × (p(1 − p))^fee_exponent` (`libs.fees`);
    `base_fee_bps` is the CLOB's base fee (GET /fee-rate, the rate signed into orders), kept as
    reported. Kalshi's fee rule is the venue-wide schedule named in `fee_note`.
    """

    venue: str
    instrument: str
    market_id: str = ""
    """The venue's own id: Kalshi ticker, Polymarket outcome token id."""
    source: str = "live"
    title: str = ""
    status: str = ""
    """As the venue says it (Kalshi: active, closed, settled...; Polymarket: open, closed, archived)."""
    tick_size: int = 0
    """The smallest price step, in units of 1/PRICE_SCALE USD (100 = $0.01); 0 when unknown."""
    tick_ranges: list[TickRange] = []
    """The grid per price range when it is not one step everywhere (Kalshi `tapered_deci_cent`)."""
    min_order_size: float = 0.0
    """Smallest order the venue accepts, in contracts (0: unknown or none)."""
    close_ts: int | None = None
    """When trading closes (UTC ns), if known."""
    expiration_ts: int | None = None
    neg_risk: bool | None = None
    """Polymarket: part of a neg-risk (multi-outcome) market."""
    base_fee_bps: int | None = None
    """Polymarket: the CLOB's base fee in basis points (GET /fee-rate `base_fee`, market `taker_base_fee`)."""
    maker_base_fee_bps: int | None = None
    taker_fee_rate: str = ""
    """The taker fee coefficient as the venue states it ("0.07"), when it reports one; "" when unknown."""
    fee_exponent: str = ""
    """The exponent of p(1 − p) in the taker fee ("1"), when reported."""
    fees_enabled: bool | None = None
    fee_note: str = ""


class Leg(msgspec.Struct, frozen=True, kw_only=True):
    """One side of a multi-venue position: buy `size` of `outcome` on `venue`."""

    venue: str
    instrument: str
    outcome: Outcome
    side: Side = "buy"
    size: int
    limit_px: int
    """Worst price (in the outcome's own terms) the size was priced at."""
    cost_micros: int
    fee_micros: int


class Opportunity(Event, kw_only=True, tag="opp.v1"):
    """One step in an opportunity's life: opened, updated (size or edge changed), closed.

    `opportunity_id` is stable across the lifecycle; the time from opened to closed is
    its success span.
    """

    opportunity_id: str
    opportunity_key: str
    strategy: str
    status: OppStatus
    legs: list[Leg]
    size: int
    gross_cost_micros: int
    fees_micros: int
    net_edge_micros: int
    net_edge_per_contract_micros: int
    book_ts: int
    opened_at: int
    closed_at: int | None = None


class Intent(Event, kw_only=True, tag="intent.v1"):
    """A request to execute an opportunity's legs, emitted when net edge clears the threshold."""

    opportunity_id: str
    opportunity_key: str
    strategy: str
    legs: list[Leg]
    size: int
    net_edge_micros: int
    net_edge_per_contract_micros: int
    book_ts: int


class LegFill(msgspec.Struct, frozen=True, kw_only=True):
    """How one leg of a paper trade filled against the book."""

    venue: str
    instrument: str
    outcome: Outcome
    side: Side
    requested_size: int
    matched_size: int
    cost_micros: int
    fee_micros: int
    worst_px: int
    fill_pct: float = 0.0
    """matched_size / requested_size as a percent, 0-100 (100.0 = filled in full), not a fraction."""
    executed_at: int = 0
    """When this leg filled: the second leg fills MT_PAPER_LEG_GAP_MS after the first."""
    book_ts: int = 0
    """Market time of the book this leg walked."""


class PaperTrade(Event, kw_only=True, tag="paper.trade.v1"):
    """A virtual fill of an intent's legs against the books a paper run holds.

    Legs fill one after the other; `matched_size` is the hedged pairs (the least any leg filled).
    `payout_micros` is what the hedged pairs pay at resolution ($1 per pair), so
    `pnl_micros = payout_micros - cost_micros - fee_micros` is the P&L locked in, with a broken
    pair's unhedged contracts (`unhedged_size`, cost + fees `exposure_micros`) counted as lost.
    """

    run_id: str
    intent_id: str
    decision_id: str
    opportunity_key: str
    requested_size: int
    matched_size: int
    fill_pct: float
    """matched_size / requested_size as a percent, 0-100 (100.0 = filled in full), not a fraction."""
    legs: list[LegFill]
    cost_micros: int
    fee_micros: int
    payout_micros: int
    pnl_micros: int
    executed_at: int
    settled_at: int
    user_id: str = ""
    opportunity_id: str = ""
    broken: bool = False
    unhedged_size: int = 0
    exposure_micros: int = 0
    net_edge_per_contract_micros: int = 0
    """The intent's net edge per contract, as detect priced it."""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message a consumer could not decode or process, with the reason; raw data kept."""

    consumer: str
    subject: str
    reason: str
    data: bytes
    ts: int
    deliveries: int = 1


EVENT_TYPES: tuple[type[Event], ...] = (
    BookBatch,
    TradeBatch,
    BarBatch,
    RawBatch,
    MarketInfo,
    Opportunity,
    Intent,
    PaperTrade,
)
AnyEvent = BookBatch | TradeBatch | BarBatch | RawBatch | MarketInfo | Opportunity | Intent | PaperTrade
