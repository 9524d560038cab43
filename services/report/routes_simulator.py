"""The simulator (paper trading) HTTP API and its WebSocket.

Every route needs `Authorization: Bearer <jwt>` (`services.report.auth.require_user`; the
WebSocket takes `?token=`) and shows only the caller's own runs, trades and decisions: another
user's run or trade is a 404 exactly like an unknown one, so its existence does not leak.

- `POST /simulator/start` (body `proto.paper.StartRequest`) → 201 `{"run": RunView}`. The user's
  profile thresholds and the venues they have keys for go with it to the paper service
  (`svc.paper.start`, `StartRun`), which decides and answers with a `PaperReply` whose status
  and detail become the HTTP response (the 6th run, a duration over the cap: its 4xx).
  An empty `opportunity_key`, or an empty string in `opportunity_keys`, is a 422.
- `POST /simulator/stop` (body `StopRequest`, may be empty: the most recent run) → `{"runs": [...]}`;
  an empty `run_id` is a 422.
- `GET /simulator/status` → `{"active", "recent_trades", "balance_usd", "pnl_usd", "trade_count",
  "paper_service"}`: the running runs live from the paper service (`svc.paper.active`), the
  user's last 20 trades (all runs, newest first) from ClickHouse, and balance, P&L and trades
  summed over the running runs. With the paper service not answering it is still a 200:
  `"active": []`, null sums and `"paper_service": "unavailable"` (else `"available"`).
- `GET /simulator/active` → `{"runs": [...]}` (live from the paper service).
- `GET /simulator/runs?limit=50&offset=0` → `{"runs", "total"}`, newest first (ClickHouse).
- `GET /simulator/runs/{run_id}/trades?status=queued|executed|settled&limit&offset` →
  `{"run_id", "trades", "total"}`, newest first; status as of the time of asking.
- `GET /simulator/runs/{run_id}/decisions?source=intent|success_span&taken=true|false&limit&offset`
  → `{"run_id", "decisions", "total"}`, newest first: which opportunities a run considered and
  why it passed on them (each decision lists the checks it ran, passed or failed).
- `GET /simulator/trades/{trade_id}` → `{"trade", "decision", "intent", "balance_changes"}`.
- `GET /execution/intents/{intent_id}` → `{"intent", "decisions", "trades"}`: the intent as detect
  emitted it (intents are market signals, the same for every user, so any signed-in user may read
  one) with the caller's own runs' decisions and trades on it; 404 when neither the intent nor
  any of the caller's decisions on it is stored.
- `GET /simulator/report?hours=24&max_gap_s=120&min_edge_cents=3[&to=<ISO time>][&limit=500][&run_id=]`:
  the success-span report (rules in `services/report/spans.py`). `to` ends the window (default
  now; a replay's spans are in its market time; 1970-01-01 .. 2262-04-11), `limit` caps the
  listed spans (totals cover all), `run_id` restricts it to one of the caller's runs (404 for
  any other run).
- `WebSocket /simulator/ws?token=<jwt>`: the caller's live `simulator:*` events (`live.py`).

Bad input is a 422 naming the parameter or field and the value (a body that is not JSON: 400; a
body over 64 KiB: 413 — `services.report.bodies`); the paper service not answering is a 503
`paper service not answering`. Errors are `{"detail"}`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import Any

import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from libs.ids import now_ns
from libs.paper.views import trade_view
from libs.users.store import profile, venues_with_keys
from proto import codec, subjects
from proto.paper import PaperReply, RunView, StartRequest, StartRun, StopRequest, StopRun, UserQuery
from proto.units import CASH_SCALE
from services.report import simulator_queries as q
from services.report.auth import require_user
from services.report.bodies import decode_json, read_body
from services.report.live import simulator_ws
from services.report.routes_bars import ApiError, int_param, json_response, parse_when
from services.report.spans import build_report

PAPER_TIMEOUT_S = 5.0
"""How long a request to the paper service may take before the API answers 503."""
DEFAULT_LIMIT = 50
MAX_LIMIT = 1_000
MAX_OFFSET = 10_000_000
RECENT_TRADES = 20
MAX_REPORT_HOURS = 720.0
DEFAULT_REPORT_SPANS = 500
MAX_REPORT_SPANS = 10_000
TRADE_STATUSES = ("queued", "executed", "settled")
DECISION_SOURCES = ("intent", "success_span")

_start_body = msgspec.json.Decoder(StartRequest)
_stop_body = msgspec.json.Decoder(StopRequest)
_paper_reply = msgspec.msgpack.Decoder(PaperReply)


# -- parameters ---------------------------------------------------------------------------------


def _float_param(request: Request, name: str, default: float, *, lo: float, hi: float, lo_open: bool = False) -> float:
    """A finite number in [lo, hi] (or (lo, hi] with lo_open), else a 422 naming it."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(422, f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value > hi or value < lo or (lo_open and value == lo):
        limits = f"{'>' if lo_open else '>='} {lo:g} and <= {hi:g}"
        raise ApiError(422, f"{name} must be a number {limits}, got {raw!r}")
    return value


def _choice(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise ApiError(422, f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    value = {"true": True, "1": True, "false": False, "0": False}.get(raw.lower())
    if value is None:
        raise ApiError(422, f"{name} must be true or false, got {raw!r}")
    return value


def _page(request: Request) -> tuple[int, int]:
    return (
        int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        int_param(request, "offset", 0, 0, MAX_OFFSET),
    )


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_NS = 2**63 - 1
"""The last instant a signed 64-bit count of nanoseconds holds (2262-04-11T23:47:16.854775807Z)."""
DAY_NS = 86_400 * 10**9


def _to_ns(request: Request) -> int:
    """`to`: an ISO time (UTC when naive) or a date (its end); default now.

    It must lie within 1970-01-01 .. 2262-04-11 (the times are signed 64-bit nanoseconds); the
    date 2262-04-11 means its last representable instant. Anything else is a 422 naming `to`.
    """
    raw = request.query_params.get("to")
    if not raw:
        return now_ns()
    out_of_range = ApiError(422, f"to must be between 1970-01-01 and 2262-04-11 (UTC), got {raw[:64]!r}")
    is_date = len(raw) == 10
    try:
        when = parse_when(raw, "to", end=is_date)
    except OverflowError:  # a date's end past 9999-12-31
        raise out_of_range from None
    ns = (when - EPOCH) // dt.timedelta(microseconds=1) * 1000
    if is_date and MAX_NS < ns <= MAX_NS + DAY_NS:
        ns = MAX_NS  # the end of 2262-04-11
    if not 0 <= ns <= MAX_NS:
        raise out_of_range
    return ns


def _check_start(req: StartRequest) -> None:
    """What msgspec's types cannot say: amounts positive and finite, a duration not negative, no empty keys."""
    if not (math.isfinite(req.starting_usd) and req.starting_usd > 0):
        raise ApiError(422, f"starting_usd must be a positive finite number of dollars, got {req.starting_usd!r}")
    d = req.duration_minutes
    if d is not None and not (math.isfinite(d) and d >= 0):
        raise ApiError(422, f"duration_minutes must be 0 (until stopped) or a positive number, got {d!r}")
    if req.opportunity_key is not None and not req.opportunity_key.strip():
        raise ApiError(422, "opportunity_key must not be empty: leave it out to watch every opportunity")
    for i, key in enumerate(req.opportunity_keys or ()):
        if not key.strip():
            raise ApiError(422, f"opportunity_keys[{i}] must not be empty, got {key!r}")


def _check_stop(req: StopRequest) -> None:
    if req.run_id is not None and not req.run_id.strip():
        raise ApiError(422, "run_id must not be empty: leave it out to stop your most recently started run")


# -- the paper service --------------------------------------------------------------------------


async def ask_paper(request: Request, verb: str, command: msgspec.Struct) -> list[RunView]:
    """Request/reply to the paper service; a reply with an error status becomes that ApiError."""
    subject = subjects.svc("paper", verb)
    try:
        msg = await request.app.state.nc.request(subject, codec.encode(command), timeout=PAPER_TIMEOUT_S)
    except NoRespondersError:
        raise ApiError(503, f"paper service not answering (no responder on {subject})") from None
    except NatsTimeout:
        raise ApiError(
            503, f"paper service not answering (no reply on {subject} within {PAPER_TIMEOUT_S:g} s)"
        ) from None
    try:
        reply = _paper_reply.decode(msg.data)
    except msgspec.DecodeError as e:
        raise ApiError(502, f"paper service sent an unreadable reply on {subject}: {e}") from None
    if not 200 <= reply.status < 300:
        raise ApiError(reply.status, reply.detail or f"paper service refused ({reply.status})")
    return list(reply.runs)


def _micros(usd: float) -> int:
    return round(usd * CASH_SCALE)


async def start(request: Request) -> Response:
    user = await require_user(request)
    raw = await read_body(request)
    req: StartRequest = decode_json(raw if raw.strip() else b"{}", _start_body)
    _check_start(req)
    store, settings = request.app.state.store, request.app.state.settings

    keys = sorted({*([req.opportunity_key] if req.opportunity_key else []), *(req.opportunity_keys or [])})

    def read() -> tuple[Any, list[str], set[str]]:
        return profile(store, settings, user), venues_with_keys(store, user), _known_keys(store, keys)

    prof, venues, known = await asyncio.to_thread(read)
    command = StartRun(
        user_id=user,
        request=req,
        min_net_edge_micros=round(prof.min_net_edge_cents * CASH_SCALE / 100),
        max_leg_micros=_micros(prof.max_leg_usd),
        daily_cap_micros=_micros(prof.daily_cap_usd),
        keys_present=sorted(venues),
    )
    runs = await ask_paper(request, "start", command)
    if not runs:
        raise ApiError(502, "paper service accepted the run but sent no run back")
    warnings = [
        f"opportunity_key {k!r} has never been seen by detect: the run watches it, but decides nothing until it is"
        for k in keys
        if k not in known
    ]
    return json_response({"run": runs[0], "warnings": warnings}, 201)


def _known_keys(store: Any, keys: list[str]) -> set[str]:
    """Those of `keys` some stored opportunity has had (a typo'd key would otherwise watch nothing, silently)."""
    if not keys:
        return set()
    q = "SELECT DISTINCT opportunity_key FROM {db}.opportunities WHERE opportunity_key IN {keys:Array(String)}"
    return {str(k) for k in store.query_df(q, {"keys": keys})["opportunity_key"].to_list()}


async def stop(request: Request) -> Response:
    user = await require_user(request)
    raw = await read_body(request)
    req: StopRequest = decode_json(raw, _stop_body) if raw.strip() else StopRequest()
    _check_stop(req)
    runs = await ask_paper(request, "stop", StopRun(user_id=user, run_id=req.run_id))
    return json_response({"runs": runs})


async def active(request: Request) -> Response:
    user = await require_user(request)
    return json_response({"runs": await ask_paper(request, "active", UserQuery(user_id=user))})


async def status(request: Request) -> Response:
    """The running runs (live) with their summed balance, P&L and trades, and the recent trades (stored).

    The paper service not answering does not fail the request: the stored recent trades are still
    worth showing, so the answer has `"active": []`, `"paper_service": "unavailable"` and null
    balance, P&L and trade count (unknown, not zero); otherwise `"paper_service": "available"`.
    """
    user = await require_user(request)
    try:
        running: list[RunView] | None = await ask_paper(request, "active", UserQuery(user_id=user))
    except ApiError as e:
        if e.status != 503:
            raise
        running = None
    recent, _ = await asyncio.to_thread(
        q.trades, request.app.state.store, user, now=now_ns(), limit=RECENT_TRADES, offset=0
    )
    if running is None:
        return json_response(
            {
                "active": [],
                "recent_trades": recent,
                "balance_usd": None,
                "pnl_usd": None,
                "trade_count": None,
                "paper_service": "unavailable",
            }
        )
    return json_response(
        {
            "active": running,
            "recent_trades": recent,
            "balance_usd": round(sum(r.balance_usd for r in running), 6),
            "pnl_usd": round(sum(r.pnl_usd for r in running), 6),
            "trade_count": sum(r.trade_count for r in running),
            "paper_service": "available",
        }
    )


# -- history from ClickHouse --------------------------------------------------------------------


async def runs(request: Request) -> Response:
    user = await require_user(request)
    limit, offset = _page(request)
    views, total = await asyncio.to_thread(q.runs, request.app.state.store, user, limit, offset)
    return json_response({"runs": views, "total": total})


async def _own_run(request: Request, user: str) -> str:
    run_id = request.path_params["run_id"]
    if await asyncio.to_thread(q.run, request.app.state.store, user, run_id) is None:
        raise ApiError(404, f"run {run_id!r} not found")
    return run_id


async def run_trades(request: Request) -> Response:
    user = await require_user(request)
    limit, offset = _page(request)
    wanted = _choice(request, "status", TRADE_STATUSES)
    run_id = await _own_run(request, user)
    views, total = await asyncio.to_thread(
        q.trades,
        request.app.state.store,
        user,
        now=now_ns(),
        run_id=run_id,
        status=wanted,  # type: ignore[arg-type]
        limit=limit,
        offset=offset,
    )
    return json_response({"run_id": run_id, "trades": views, "total": total})


async def run_decisions(request: Request) -> Response:
    user = await require_user(request)
    limit, offset = _page(request)
    source = _choice(request, "source", DECISION_SOURCES)
    taken = _bool_param(request, "taken")
    run_id = await _own_run(request, user)
    views, total = await asyncio.to_thread(
        q.decisions, request.app.state.store, user, run_id, source=source, taken=taken, limit=limit, offset=offset
    )
    return json_response({"run_id": run_id, "decisions": views, "total": total})


async def trade_detail(request: Request) -> Response:
    user = await require_user(request)
    trade_id = request.path_params["trade_id"]
    store = request.app.state.store
    now = now_ns()

    def read() -> dict[str, Any] | None:
        t = q.trade(store, user, trade_id)
        if t is None:
            return None
        return {
            "trade": trade_view(t, now),
            "decision": q.decision(store, user, t.decision_id) if t.decision_id else None,
            "intent": q.intent(store, t.intent_id) if t.intent_id else None,
            "balance_changes": q.balance_changes(store, user, t.run_id, t.id),
        }

    body = await asyncio.to_thread(read)
    if body is None:
        raise ApiError(404, f"trade {trade_id!r} not found")
    return json_response(body)


async def intent_detail(request: Request) -> Response:
    user = await require_user(request)
    intent_id = request.path_params["intent_id"]
    store = request.app.state.store
    now = now_ns()

    def read() -> dict[str, Any]:
        return {
            "intent": q.intent(store, intent_id),
            "decisions": q.intent_decisions(store, user, intent_id),
            "trades": q.intent_trades(store, user, intent_id, now),
        }

    body = await asyncio.to_thread(read)
    if body["intent"] is None and not body["decisions"] and not body["trades"]:
        raise ApiError(404, f"intent {intent_id!r} not found")
    return json_response(body)


async def report(request: Request) -> Response:
    user = await require_user(request)
    hours = _float_param(request, "hours", 24.0, lo=0.0, hi=MAX_REPORT_HOURS, lo_open=True)
    max_gap_s = _float_param(request, "max_gap_s", 120.0, lo=0.0, hi=MAX_REPORT_HOURS * 3600)
    min_edge_cents = _float_param(request, "min_edge_cents", 3.0, lo=0.0, hi=100.0)
    limit = int_param(request, "limit", DEFAULT_REPORT_SPANS, 1, MAX_REPORT_SPANS)
    to_ns = _to_ns(request)
    run_id = request.query_params.get("run_id") or None
    lo = to_ns - round(hours * 3600e9)
    gap_ns = round(max_gap_s * 1e9)
    store = request.app.state.store
    if run_id is not None and await asyncio.to_thread(q.run, store, user, run_id) is None:
        raise ApiError(404, f"run {run_id[:80]!r} not found")

    def read() -> Any:
        opps, trades, decisions, with_intent = q.report_rows(
            store, user, lo=lo, hi=to_ns, max_gap_ns=gap_ns, run_id=run_id
        )
        return build_report(
            opps,
            trades,
            decisions,
            with_intent,
            hours=hours,
            max_gap_s=max_gap_s,
            min_edge_cents=min_edge_cents,
            to_ns=to_ns,
            limit=limit,
            run_id=run_id,
        )

    return json_response(await asyncio.to_thread(read))


ROUTES: list[BaseRoute] = [
    Route("/simulator/start", start, methods=["POST"]),
    Route("/simulator/stop", stop, methods=["POST"]),
    Route("/simulator/status", status, methods=["GET"]),
    Route("/simulator/active", active, methods=["GET"]),
    Route("/simulator/runs", runs, methods=["GET"]),
    Route("/simulator/runs/{run_id}/trades", run_trades, methods=["GET"]),
    Route("/simulator/runs/{run_id}/decisions", run_decisions, methods=["GET"]),
    Route("/simulator/trades/{trade_id}", trade_detail, methods=["GET"]),
    Route("/simulator/report", report, methods=["GET"]),
    Route("/execution/intents/{intent_id}", intent_detail, methods=["GET"]),
    WebSocketRoute("/simulator/ws", simulator_ws),
]
