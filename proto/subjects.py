"""NATS subject names, read left to right from general to specific.

`md.book.<venue>.<instrument>`, `md.trade.<venue>.<instrument>`,
`md.bar.<venue>.<instrument>.<timeframe>`, `md.raw.<venue>` (venue responses as received, for
recording), `md.info.<venue>.<instrument>` (a market's title, status, tick size and fees),
`ohlcv.nightly.<request_id>` (nightly-update progress, core NATS only), `opp.<strategy>`,
`intent.<strategy>`, `paper.<kind>.<run_id>`, `dlq.<consumer>`, `svc.<service>.<verb>`,
`sim.job.<job_id>.<kind>` (job, status, result), `sim.calibration.<cal_hash>`, `sim.work` (the
work queue) and `sim.progress.<job_id>` (core NATS only, not stored).
A batch that mixes instruments is published with the instrument token `_multi`.
"""

from __future__ import annotations

import re

from proto.events import BarBatch, BookBatch, MarketInfo, RawBatch, TradeBatch

MULTI = "_multi"
_BAD_TOKEN = re.compile(r"[\s.*>]")


class SubjectError(ValueError):
    """A subject token that NATS would misread (empty, or with '.', '*', '>' or spaces)."""


def token(value: str, what: str = "token") -> str:
    """Return `value` if it is a valid single subject token, else raise naming it."""
    if not value or _BAD_TOKEN.search(value):
        raise SubjectError(f"{what} {value!r} is not a valid NATS subject token (no '.', '*', '>', spaces)")
    return value


def book(venue: str, instrument: str) -> str:
    return f"md.book.{token(venue, 'venue')}.{token(instrument, 'instrument')}"


def trade(venue: str, instrument: str) -> str:
    return f"md.trade.{token(venue, 'venue')}.{token(instrument, 'instrument')}"


def bar(venue: str, instrument: str, timeframe: str) -> str:
    return f"md.bar.{token(venue, 'venue')}.{token(instrument, 'instrument')}.{token(timeframe, 'timeframe')}"


def of_batch(batch: BookBatch | TradeBatch | BarBatch | RawBatch | MarketInfo) -> str:
    """The subject a market-data event goes on: md.book / md.trade / md.bar (`_multi` for several
    instruments), md.raw.<venue> for a recording, md.info.<venue>.<instrument> for market facts."""
    if isinstance(batch, RawBatch):
        return raw(batch.venue)
    if isinstance(batch, MarketInfo):
        return info(batch.venue, batch.instrument)
    inst = batch.instruments[0] if len(batch.instruments) == 1 else MULTI
    if isinstance(batch, BarBatch):
        return bar(batch.venue, inst, batch.timeframe)
    if isinstance(batch, TradeBatch):
        return trade(batch.venue, inst)
    return book(batch.venue, inst)


def raw(venue: str) -> str:
    """Venue responses exactly as received (a recording)."""
    return f"md.raw.{token(venue, 'venue')}"


def info(venue: str, instrument: str) -> str:
    """A market's facts (MarketInfo): title, status, tick size, fee schedule."""
    return f"md.info.{token(venue, 'venue')}.{token(instrument, 'instrument')}"


def nightly_progress(request_id: str) -> str:
    """Core NATS (not in any stream): progress of one nightly bar update."""
    return f"ohlcv.nightly.{token(request_id, 'request_id')}"


def opp(strategy: str) -> str:
    return f"opp.{token(strategy, 'strategy')}"


def intent(strategy: str) -> str:
    return f"intent.{token(strategy, 'strategy')}"


def paper(kind: str, run_id: str) -> str:
    return f"paper.{token(kind, 'kind')}.{token(run_id, 'run_id')}"


def ui_simulator(user_id: str, kind: str) -> str:
    """Core NATS, JSON (not in any stream): live `simulator:<kind>` events for one user's dashboard,
    subscribable from a browser over NATS WebSocket. kind: `trade` or `run`."""
    return f"ui.simulator.{token(user_id, 'user_id')}.{token(kind, 'kind')}"


def dlq(consumer: str) -> str:
    return f"dlq.{token(consumer, 'consumer')}"


def svc(service: str, verb: str) -> str:
    return f"svc.{token(service, 'service')}.{token(verb, 'verb')}"


def sim_job(job_id: str, kind: str) -> str:
    """`sim.job.<job_id>.<kind>`: kind is job, status or result."""
    return f"sim.job.{token(job_id, 'job_id')}.{token(kind, 'kind')}"


def sim_calibration(cal_hash: str) -> str:
    return f"sim.calibration.{token(cal_hash, 'cal_hash')}"


def sim_progress(job_id: str) -> str:
    """Core NATS (not in any stream): throttled progress of a job's running sims."""
    return f"sim.progress.{token(job_id, 'job_id')}"


BOOK_ALL = "md.book.>"
TRADE_ALL = "md.trade.>"
BAR_ALL = "md.bar.>"
RAW_ALL = "md.raw.>"
INFO_ALL = "md.info.>"
NIGHTLY_ALL = "ohlcv.nightly.>"
SVC_BARS_ALL = "svc.bars.*"
"""Every verb of the OHLCV bar manager (`svc.bars.<verb>`)."""
OPP_ALL = "opp.>"
INTENT_ALL = "intent.>"
PAPER_UPDATE_ALL = "paper.update.>"
"""Every run's steps (`RunUpdate` on `paper.update.<run_id>`)."""
SVC_PAPER_ALL = "svc.paper.*"
"""Every verb of the paper service's run API (`svc.paper.<verb>`: start, stop, active)."""
UI_SIMULATOR_ALL = "ui.simulator.>"
DLQ_ALL = "dlq.>"
SVC_SIM_ALL = "svc.sim.*"
"""Every verb of the simulation job API (`svc.sim.<verb>`)."""
SIM_WORK = "sim.work"
SIM_JOB_ALL = "sim.job.>"
SIM_JOB_JOBS = "sim.job.*.job"
SIM_JOB_STATUS = "sim.job.*.status"
SIM_CALIBRATION_ALL = "sim.calibration.>"
SIM_PROGRESS_ALL = "sim.progress.>"
