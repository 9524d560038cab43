"""What the simulation engine's parts exchange: calibrations, normalised job specs, work
items and results. Prices are integer units of $0.0001 (`proto.units.PRICE_SCALE`, the
LOBSTER convention); times of day are seconds after local midnight of the market.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from proto.events import Event

Market = Literal["XNYS", "XHKG"]
"""Markets whose trading hours the engine knows: US equities, Hong Kong (HKEX)."""
ScenarioName = Literal["normal", "flash_crash", "buy_panic", "gradual_selloff", "trending_up", "trending_down"]
AlgoType = Literal["twap", "vwap", "css"]
SimState = Literal["queued", "running", "completed", "error"]


class DayStats(msgspec.Struct, frozen=True, kw_only=True):
    """The statistics a calibration matches and a simulated day is judged on, computed the
    same way from a real LOBSTER day and from a simulated one (`libs.sim.stats.day_stats`)."""

    spread_ticks_mean: float
    """Time-weighted mean bid-ask spread, in ticks."""
    depth_touch_mean: float
    """Time-weighted mean of (best bid size + best ask size) / 2, in shares."""
    limit_rate_per_s: float
    """New limit orders per second of the session."""
    cancel_rate_per_s: float
    """Cancels (partial and full) per second."""
    trade_rate_per_s: float
    """Trades (executions) per second."""
    trade_size_mean: float
    trade_size_p50: float
    trade_size_p90: float
    minute_vol_bps: float
    """Standard deviation of 1-minute mid log returns, in basis points."""
    daily_volume: int
    """Shares traded over the session."""
    # stylised facts of 1-minute mid returns
    kurtosis_excess: float
    acf1_returns: float
    acf1_abs_returns: float
    corr_volume_abs_return: float


class Calibration(msgspec.Struct, frozen=True, kw_only=True):
    """Model parameters for one (symbol, date), estimated from a real day; stored in
    ClickHouse (`sim_calibrations`) and carried whole in every work item."""

    symbol: str
    cal_date: str
    """YYYY-MM-DD."""
    market: Market
    cal_hash: str
    """8 hex digits identifying the parameters (`libs.sim.calibration.calibration_hash`)."""
    source: str
    """Where the day came from (file name), for the record."""
    stage: str = "model_calibration"
    status: str = "complete"
    tick: int
    """Price tick in $0.0001 units (100 = one cent)."""
    open_mid: int
    """First mid of the session, $0.0001 units."""
    stats: DayStats
    """The real day's statistics: the targets."""
    limit_offset_ticks: list[float]
    """Quantiles (0, 0.1, ..., 1.0) of where new limit orders are placed, in ticks behind
    the same-side best price (0 = at the touch, negative = inside the spread)."""
    order_size_q: list[float]
    """Quantiles (0, 0.1, ..., 1.0) of new limit order sizes, in shares."""
    trade_size_q: list[float]
    """Quantiles (0, 0.1, ..., 1.0) of trade (execution) sizes, in shares."""
    cancel_lifetime_s: float
    """Mean lifetime of a limit order that is cancelled, in seconds."""
    volume_profile: list[float]
    """Fraction of the day's traded volume in each minute of the session (sums to 1)."""
    activity_profile: list[float]
    """Message rate of each minute of the session relative to the day's mean (mean 1)."""
    created_at: int
    """UTC nanoseconds when it was estimated."""


class ScenarioSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A validated scenario: injected aggressive flow on top of the background agents."""

    name: ScenarioName
    side: int
    """+1 buys, -1 sells, 0 for `normal`."""
    impact_multiplier: float
    """Total injected volume as a multiple of the resting liquidity on the side it hits."""
    order_size_ratio: float
    """Each child order as a fraction of that resting liquidity."""
    order_freq_s: float
    """Seconds between child orders."""
    start_s: float
    """Time of day (seconds after local midnight) of the first child order."""


class AlgoSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A validated execution algorithm: a parent order cut into child market orders."""

    type: AlgoType
    side: int
    """+1 buy, -1 sell."""
    order_size: int
    """Total shares (positive)."""
    start_s: float
    horizon_s: float
    frequency_s: float
    random_offset_s: float
    """Each child is moved by a uniform offset in [0, random_offset_s) (0: none)."""
    schedule_s: list[float] = []
    """css only: child times of day, seconds after local midnight."""
    schedule_qty: list[int] = []
    """css only: child sizes (positive shares)."""
    label: str
    """`{type}_{hash8}`, the algo token in sim ids."""


class SimTask(msgspec.Struct, frozen=True, kw_only=True):
    """One Monte Carlo run, as a sim worker receives it from the work queue."""

    job_id: str
    sim_id: str
    run: int
    seed: int
    """The run's own seed; a baseline and its algo runs share it (common random numbers)."""
    calibration: Calibration
    scenario: ScenarioSpec
    algo: AlgoSpec | None = None


class SimJob(Event, kw_only=True, tag="sim.job.v1"):
    """A submitted, validated job and the sim ids it queued."""

    job_id: str
    symbol: str
    cal_date: str
    n_runs: int
    seed: int
    scenario: str
    request: str
    """The request as submitted, JSON."""
    sim_ids: list[str]
    cached: bool = False
    """Part of the pre-run baseline set that `list_cached` lists."""


class SimStatus(Event, kw_only=True, tag="sim.status.v1"):
    """A run's state change: queued, running, completed (with metrics) or error (with why)."""

    job_id: str
    sim_id: str
    state: SimState
    error: str = ""
    metrics: dict[str, float] = msgspec.field(default_factory=dict)
    progress: float = 0.0
    """0..1 within the run."""


class SimResult(Event, kw_only=True, tag="sim.result.v1"):
    """A finished run's output files, each a table of little-endian int64/float64 columns.

    `files[name][column]` is the raw bytes of a numpy array; `dtypes[name][column]` its
    numpy dtype string ("<i8", "<f8"). File names are those `get_sim_data` serves:
    mid_price_by_min, trades, algo_fills, l1, metrics.
    """

    job_id: str
    sim_id: str
    files: dict[str, dict[str, bytes]]
    dtypes: dict[str, dict[str, str]]


# -- appended for the job API, the workers and the recorder (issue 3, sim jobs) --------------


class SimCalibration(Event, kw_only=True, tag="sim.calibration.v1"):
    """A calibration made available to jobs (published on `sim.calibration.<cal_hash>`)."""

    calibration: Calibration


class SimResultPart(Event, kw_only=True, tag="sim.result.part.v1"):
    """One row range of one result file too big to ride inside a SimResult (NATS max_payload
    is 8 MB): rows `row0 .. row0 + len - 1` of `file`, as little-endian column bytes."""

    job_id: str
    sim_id: str
    file: str
    part: int
    n_parts: int
    row0: int
    columns: dict[str, bytes]
    dtypes: dict[str, str]


SIM_EVENT_TYPES: tuple[type[Event], ...] = (SimJob, SimStatus, SimResult, SimResultPart, SimCalibration)
AnySimEvent = SimJob | SimStatus | SimResult | SimResultPart | SimCalibration
"""Everything on the SIM stream (`sim.job.>`, `sim.calibration.>`)."""


class SimJobRequest(msgspec.Struct, frozen=True, kw_only=True):
    """`svc.sim.submit`: a job as a user asks for it (validated by `libs.sim.jobs.parse_request`)."""

    symbol: str
    cal_date: str
    """YYYY-MM-DD, a date with a complete calibration for the symbol."""
    n_runs: int = 100
    seed: int = 42
    scenario: str = "normal"
    scenario_params: dict[str, Any] = {}
    exec_algos: list[dict[str, Any]] = []
    """Algo configs as `libs.sim.algos.parse_algo` takes them; a css `orders` schedule is a
    list of [ISO datetime, shares] pairs."""
    cached: bool = False
    """Part of the pre-run baseline set `list_cached` lists (`markettwin sim warm-cache`)."""


class SubmitReply(msgspec.Struct, frozen=True, kw_only=True):
    """`svc.sim.submit` reply: sim ids ordered baseline[0:n_runs], then algo 0's runs, ..."""

    job_id: str
    queued_sim_ids: list[str]
    total_simulations: int


class JobStatusReply(msgspec.Struct, frozen=True, kw_only=True):
    """`svc.sim.job_status` reply."""

    job_id: str
    total_simulations: int
    status_summary: dict[str, int]
    """Sims per state: queued, running, completed, error."""
    is_complete: bool
    """Every sim has finished (completed or error)."""
    progress: float
    """0..1 over the whole job (running sims count by their own progress)."""
    errors: dict[str, str] = {}
    """sim_id -> why, for sims that ended in error."""


class JobSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One job in the `svc.sim.jobs` reply."""

    job_id: str
    created_at: str
    """ISO 8601, UTC."""
    symbol: str
    cal_date: str
    scenario: str
    n_runs: int
    seed: int
    cached: bool
    sim_ids: list[str]


class JobsReply(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    jobs: list[JobSummary]
    """Newest first."""


class SimSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One sim in the `svc.sim.job_results` reply."""

    sim_id: str
    status: SimState
    available_files: list[str] = []
    """`trades.parquet`, ...: what `get_sim_data` serves for this sim (once stored)."""
    metrics: dict[str, float] = {}
    error: str = ""


class JobResultsReply(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    total_simulations: int
    completed: int
    simulations: list[SimSummary]


class CachedGroup(msgspec.Struct, frozen=True, kw_only=True):
    """One (symbol, date, scenario) group of pre-run baseline sims."""

    symbol: str
    date: str
    scenario: str
    n_runs: int
    """Completed baseline runs stored for the group."""
    example_sim_id: str
    sim_ids: list[str]


class CachedReply(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    simulations: list[CachedGroup]


class SymbolInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One calibration jobs can use (`get_available_symbols`)."""

    symbol: str
    date: str
    market: str
    cal_hash: str
    status: str
    stage: str
    source: str
    created_at: str


class SymbolsReply(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    symbols: list[SymbolInfo]


class ErrorReply(msgspec.Struct, frozen=True, kw_only=True):
    """Any `svc.sim.*` request that failed: what was wrong (the client raises SimulationError)."""

    error: str
    verb: str = ""
