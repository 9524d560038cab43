"""HTTP routes of the OHLCV bar manager, with the reference API's paths, parameters and JSON fields.

`/trading-data/*` and `/data-analysis/completeness` read ClickHouse (libs.bars); `/nightly-update/*`
forward to the bars service over NATS (`svc.bars.<verb>`). A bad parameter is a 422 (an unknown
request id a 404, a symbol with no bars at all a 404) with `{"detail": "..."}` naming the
parameter and the value; the bars service not answering, or refusing a nightly update because
no bar provider has an API key, is a 503. A symbol may contain `/`
(`/trading-data/data/BTC/USD` or `EUR%2FUSD`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import Any

import msgspec
import polars as pl
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.bars import completeness
from libs.bars import store as bars_store
from libs.bars.assets import TIMEFRAMES
from libs.bars.schema import empty_frame
from libs.bars.timeutil import parse_date
from proto import subjects

DEFAULT_PAGE_SIZE = 1_000
MAX_PAGE_SIZE = 10_000
MAX_PAGE = 1_000_000
"""Highest page number accepted (1,000,000 pages of 10,000 bars is 19,000 years of minutes)."""
NATS_TIMEOUT_S = 10.0
CANDLE_DECIMALS = 8
"""Decimal places of the prices and volume in HTTP candles (Python's round: to the nearest, ties to even)."""
VALUES = ("open", "high", "low", "close", "volume")


class ApiError(Exception):
    """An HTTP error with a `detail` message."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def json_response(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status, media_type="application/json")


def error_response(status: int, detail: str) -> Response:
    return json_response({"detail": detail}, status)


def int_param(request: Request, name: str, default: int, lo: int, hi: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, f"{name} must be an integer, got {raw!r}") from None
    if value < lo or (hi is not None and value > hi):
        limits = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ApiError(422, f"{name} must be {limits}, got {value}")
    return value


def parse_when(raw: str, name: str, *, end: bool) -> dt.datetime:
    """A YYYY-MM-DD date (a whole UTC day: an end date includes that day) or an ISO time (UTC if naive)."""
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            when = dt.datetime.combine(day, dt.time(), dt.UTC)
            return when + dt.timedelta(days=1) if end else when
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, f"{name} must be a date YYYY-MM-DD or an ISO time, got {raw!r}") from None
    when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return when + dt.timedelta(microseconds=1) if end else when


def _timeframe(request: Request) -> str:
    timeframe = request.query_params.get("timeframe") or "1min"
    if timeframe not in TIMEFRAMES:
        raise ApiError(422, f"timeframe: unknown timeframe {timeframe!r}; supported: {', '.join(TIMEFRAMES)}")
    return timeframe


async def trading_data(request: Request) -> Response:
    """`GET /trading-data/data/{symbol}`: stored bars, paged.

    Each candle is `{date, open, high, low, close, volume}` with `date` the bar open in UTC
    (`YYYY-MM-DDTHH:MM:SSZ`) and the prices and volume as JSON numbers: the stored Float64 values
    rounded to CANDLE_DECIMALS (8) decimal places, so float noise from resampling sums
    (`21.972900000000003`) is written `21.9729` (the reference API writes decimal strings; numbers
    spare clients a conversion). A page
    past the last one is empty (with the real totals), not an error; `page` is at most MAX_PAGE.
    """
    store = request.app.state.store
    symbol = request.path_params["symbol"].strip()
    if not symbol:
        raise ApiError(422, "symbol must not be empty")
    timeframe = _timeframe(request)
    q = request.query_params
    start = parse_when(q["start_date"], "start_date", end=False) if q.get("start_date") else None
    end = parse_when(q["end_date"], "end_date", end=True) if q.get("end_date") else None
    if start is not None and end is not None and start >= end:
        raise ApiError(422, f"start_date {q['start_date']} is after end_date {q['end_date']}")
    order = q.get("order_by") or "desc"
    if order not in ("asc", "desc"):
        raise ApiError(422, f"order_by must be 'asc' or 'desc', got {order!r}")
    page = int_param(request, "page", 1, 1, MAX_PAGE)
    size = int_param(request, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    offset = (page - 1) * size

    def query() -> tuple[int, Any, bool]:
        total = bars_store.count_bars(store, symbol, timeframe, start, end)
        if offset >= total:  # past the last page: nothing to read
            frame = empty_frame()
        else:
            frame = bars_store.read_bars(store, symbol, timeframe, start, end, order=order, limit=size, offset=offset)
        known = total > 0 or bars_store.last_bar_ts(store, symbol, timeframe) is not None
        return total, frame, known

    total, frame, known = await asyncio.to_thread(query)
    if not known:
        raise ApiError(404, f"symbol {symbol!r}: no {timeframe} bars stored")
    # bars open on whole minutes: the date is to the second, in UTC with a Z (as the reference API writes it)
    candles = [
        {"date": date, **{c: round(v, CANDLE_DECIMALS) for c, v in zip(VALUES, values, strict=True)}}
        for date, *values in frame.select(
            pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("date"), *VALUES
        ).iter_rows()
    ]
    pages = math.ceil(total / size) if total else 0
    dates = [c["date"] for c in candles]
    return json_response(
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "candles": candles,
            "start_date": min(dates) if dates else None,
            "end_date": max(dates) if dates else None,
            "pagination": {
                "page": page,
                "page_size": size,
                "total_items": total,
                "total_pages": pages,
                "has_next": page < pages,
                "has_previous": page > 1,
            },
        }
    )


async def symbols(request: Request) -> Response:
    """`GET /trading-data/symbols?timeframe=`: every symbol with bars at that timeframe."""
    timeframe = _timeframe(request)
    return json_response(await asyncio.to_thread(bars_store.stored_symbols, request.app.state.store, timeframe))


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(422, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def _date_field(body: dict[str, Any], name: str) -> dt.date:
    if body.get(name) is None:
        raise ApiError(422, f"{name} is required (YYYY-MM-DD)")
    try:
        return parse_date(body[name], name)
    except ValueError as e:
        raise ApiError(422, str(e)) from None


async def data_completeness(request: Request) -> Response:
    """`POST /data-analysis/completeness`: the completeness report of stored 1-minute bars.

    Body: `symbols`, `start_date`, `end_date`, optional `include_details` (default true) and
    `asset_class` (one class for every symbol, or {symbol: class}; else MT_BARS_ASSET_OVERRIDES,
    else the symbol rule). At most MAX_SYMBOLS symbols, MAX_DAYS days and MAX_SYMBOL_DAYS
    symbols x days (`libs.bars.limits`): a bigger request is a 422 naming the limit.
    """
    body = await _json_body(request)
    syms = body.get("symbols")
    if not isinstance(syms, list) or not syms or not all(isinstance(s, str) and s.strip() for s in syms):
        raise ApiError(422, f"symbols must be a non-empty list of symbols, got {syms!r}")
    start, end = _date_field(body, "start_date"), _date_field(body, "end_date")
    if start > end:
        raise ApiError(422, f"start_date {start} is after end_date {end}")
    include = body.get("include_details", True)
    if not isinstance(include, bool):
        raise ApiError(422, f"include_details must be true or false, got {include!r}")
    if body.get("auto_fill_gaps"):
        raise ApiError(422, "auto_fill_gaps is not supported here: start a nightly update (POST /nightly-update/start)")
    store = request.app.state.store
    try:
        report = await asyncio.to_thread(
            completeness.analyse,
            store,
            [s.strip() for s in syms],
            start,
            end,
            include_details=include,
            asset_override=body.get("asset_class"),
            configured_assets=request.app.state.asset_overrides,
        )
    except ValueError as e:
        raise ApiError(422, str(e)) from None
    return json_response(report)


async def ask_bars(request: Request, verb: str, body: dict[str, Any]) -> Any:
    """Request/reply to the bars service; its error replies become ApiErrors with its code."""
    nc = request.app.state.nc
    subject = subjects.svc("bars", verb)
    try:
        msg = await nc.request(subject, msgspec.json.encode(body), timeout=NATS_TIMEOUT_S)
    except NoRespondersError:
        raise ApiError(503, f"the bars service is not running (no responder on {subject})") from None
    except NatsTimeout:
        raise ApiError(504, f"the bars service did not answer {subject} within {NATS_TIMEOUT_S:g} s") from None
    reply = msgspec.json.decode(msg.data) if msg.data else None
    if (msg.headers or {}).get("MT-Error"):
        err = reply if isinstance(reply, dict) else {}
        raise ApiError(int(err.get("code", 500)), str(err.get("error", "bars service error")))
    return reply


async def nightly_start(request: Request) -> Response:
    """`POST /nightly-update/start` → `{request_id, status: "started", message}`."""
    return json_response(await ask_bars(request, "nightly_start", await _json_body(request)))


async def nightly_status(request: Request) -> Response:
    """`GET /nightly-update/status/{request_id}`: status, progress and per-symbol results."""
    return json_response(await ask_bars(request, "nightly_status", {"request_id": request.path_params["request_id"]}))


async def nightly_progress(request: Request) -> Response:
    """`GET /nightly-update/status/{request_id}/progress`: progress and each symbol's current step."""
    s = await ask_bars(request, "nightly_status", {"request_id": request.path_params["request_id"]})
    per = {
        k: {"status": r["status"], "current_step": r["current_step"], "steps": r["steps"]}
        for k, r in s["symbol_results"].items()
    }
    return json_response(
        {"request_id": s["request_id"], "status": s["status"], "progress": s["progress"], "symbols": per}
    )


async def nightly_details(request: Request) -> Response:
    """`GET /nightly-update/status/{request_id}/details`: the complete results (the whole status)."""
    return await nightly_status(request)


async def nightly_active(request: Request) -> Response:
    """`GET /nightly-update/active`: the updates still running."""
    return json_response(await ask_bars(request, "nightly_active", {}))


ROUTES = [
    Route("/trading-data/data/{symbol:path}", trading_data, methods=["GET"]),
    Route("/trading-data/symbols", symbols, methods=["GET"]),
    Route("/nightly-update/start", nightly_start, methods=["POST"]),
    Route("/nightly-update/status/{request_id}", nightly_status, methods=["GET"]),
    Route("/nightly-update/status/{request_id}/progress", nightly_progress, methods=["GET"]),
    Route("/nightly-update/status/{request_id}/details", nightly_details, methods=["GET"]),
    Route("/nightly-update/active", nightly_active, methods=["GET"]),
    Route("/data-analysis/completeness", data_completeness, methods=["POST"]),
]
