"""Paper service throughput and latency, on a real nats-server with 5 active runs.

- `paper.intents_per_s`: a backlog of N intents (default 100,000) waiting in the INTENT stream is
  decided by a freshly (re)started paper service with 5 running runs: intents / (time from the
  service's start until its durable consumer has acked the last one). Each intent is decided by all
  5 runs: every decision and trade is in a RunUpdate stored in JetStream before the intent is acked.
- `paper.intent_to_decision_made_p50` / `_p99`: the same probe, from the intent's `ts` to the
  decision's own `ts` (stamped by the paper service when the engine decided it): publish,
  JetStream delivery and the decision, without storing the step.
- `paper.intent_to_decision_p50` / `_p99`: intents published at a steady rate (1,000/s by default)
  by another process, which also subscribes to `paper.update.>` and takes, per decision, the time
  from the intent's `ts` (stamped just before publishing) to the arrival of the RunUpdate carrying
  it (stored in JetStream first). Wall clock of one machine, both processes.
- `paper.latency_floor_p50` / `_p99`: the same probe against a stand-in that only decodes each
  intent batch and stores 5 tiny RunUpdates (no paper logic): what this machine's NATS and Python
  path costs by itself, for scale.
- `paper.engine_decisions_per_s`: the engine alone (prepare + kernel + decision columns and trades,
  no bus) on the same intents, 5 runs.
- `paper.taken_fraction`: taken decisions / decisions in the throughput run.

The market: 4 instruments quoted on Polymarket (YES asks) and Kalshi (YES bids, the NO asks), books
held by the service. Intents are hedged pairs like detect's: 50–400 contracts, limits at or inside
the books; 25% carry a net edge below the runs' minimum (skipped: min_net_edge), 10% a NO limit
below the book (skipped: exchange_validation, no depth within the limit), the rest pass every check
and are taken while the run's cash allows. Each run is a user's $10,000 run with the default
thresholds (0.5c minimum edge, $1,000 max leg) except a daily cap high enough not to bind, and the
default 2 s settlement delay: trades of $50–$400 tie up the cash until they settle, so most intents
are skipped by the `balance` check, as they would be for a real account. The taken fraction printed
says how the mix came out.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from libs import config
from libs.bus import Bus
from libs.fees import fee_models
from libs.ids import now_ns
from libs.paper.books import BookHistory, MarketFacts
from libs.paper.engine import Engine, EngineSettings, RunLimits
from proto import codec, streams, subjects
from proto.events import BookBatch, Intent, Leg
from proto.paper import PaperReply, RunUpdate, StartRequest, StartRun, UserQuery
from services.runtime import Stack
from tests.benchmarks import line

INSTRUMENTS = ["FED-A", "FED-B", "FED-C", "FED-D"]
RUNS = 5
USER = "bench"


def books(ts: int) -> list[BookBatch]:
    """Deep books on both venues for every instrument (10 levels a side)."""
    out = []
    for venue, bid0, ask0 in (("polymarket", 3_900, 4_000), ("kalshi", 5_500, 5_600)):
        out.append(
            BookBatch(
                id=f"bench-{venue}-{ts}", ts=ts, venue=venue, source="bench", levels=10, instruments=INSTRUMENTS,
                inst_idx=list(range(len(INSTRUMENTS))), book_ts=[ts] * len(INSTRUMENTS),
                bid_px=[bid0 - 10 * k for _ in INSTRUMENTS for k in range(10)],
                bid_sz=[500] * 10 * len(INSTRUMENTS),
                ask_px=[ask0 + 10 * k for _ in INSTRUMENTS for k in range(10)],
                ask_sz=[500] * 10 * len(INSTRUMENTS),
            )
        )  # fmt: skip
    return out


def intents(n: int, book_ts: int, seed: int = 1, prefix: str = "b") -> list[Intent]:
    """The intent mix (see the module docstring); ts is set by whoever publishes."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        inst = INSTRUMENTS[i % len(INSTRUMENTS)]
        u = rng.random()
        edge = 2_000 if u < 0.25 else 40_000
        no_limit = 4_400 if 0.25 <= u < 0.35 else 4_520  # 4,400: below the NO asks (1 - 0.55 = 0.45)
        size = rng.randint(50, 400)
        legs = [
            Leg(venue="polymarket", instrument=inst, outcome="yes", size=size, limit_px=4_020, cost_micros=0,
                fee_micros=0),
            Leg(venue="kalshi", instrument=inst, outcome="no", size=size, limit_px=no_limit, cost_micros=0,
                fee_micros=0),
        ]  # fmt: skip
        out.append(
            Intent(
                id=f"{prefix}{i:08d}", ts=0, opportunity_id=f"o{i}",
                opportunity_key=f"xarb:{inst}:yes@polymarket+no@kalshi", strategy="xarb", legs=legs, size=size,
                net_edge_micros=edge * size, net_edge_per_contract_micros=edge, book_ts=book_ts,
            )
        )  # fmt: skip
    return out


async def svc(bus: Bus, verb: str, req: Any) -> PaperReply:
    msg = await bus.nc.request(f"svc.paper.{verb}", codec.encode(req), timeout=10)
    return codec.decode(msg.data, PaperReply)


async def backlog_done(bus: Bus, durable: str, timeout_s: float) -> float:
    """Poll the consumer until nothing is pending or unacked; the time it was first seen so."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        info = await bus.js.consumer_info(streams.INTENT.name, durable)
        if not info.num_pending and not info.num_ack_pending:
            return time.perf_counter()
        await asyncio.sleep(0.01)
    raise TimeoutError(f"paper did not finish its backlog in {timeout_s:.0f}s")


async def service_figures(home: Path, n: int, rate: float, latency_s: float) -> list[tuple[str, float, str]]:
    settings = config.load({}, home=home, http_port=0, paper_default_run=False, log_level="warning")
    stack = await Stack.open(settings, with_store=False)
    figures: list[tuple[str, float, str]] = []
    try:
        await stack.start("paper")
        bus = await stack.connect("bench")
        for _ in range(RUNS):
            r = await svc(bus, "start", StartRun(
                user_id=USER, request=StartRequest(starting_usd=10_000.0), min_net_edge_micros=5_000,
                max_leg_micros=1_000_000_000, daily_cap_micros=10**15))  # fmt: skip
            assert r.status == 201, r.detail
        t_book = now_ns()
        for b in books(t_book):
            await bus.publish(subjects.book(b.venue, "_multi"), b)
        # the backlog: published while the service is down, decided when it comes back
        await stack.stop_service("paper")
        backlog = intents(n, t_book)
        now = now_ns()
        payloads = [codec.encode(msgspec.structs.replace(it, ts=now + i)) for i, it in enumerate(backlog)]
        await publish_raw(bus, payloads, [it.id for it in backlog])
        info = await bus.js.stream_info(streams.INTENT.name)
        assert info.state.messages >= n, info.state.messages
        del backlog, payloads  # the harness's copies: not the service's to carry (or to garbage-collect)
        gc.collect()
        t0 = time.perf_counter()
        await stack.start("paper")
        t_started = time.perf_counter()
        t_done = await backlog_done(bus, "paper-intents", timeout_s=600)
        views = (await svc(bus, "active", UserQuery(user_id=USER))).runs
        decisions = sum(v.decision_count for v in views)
        taken = sum(v.taken_count for v in views)
        if decisions != RUNS * n:
            raise SystemExit(f"paper decided {decisions} of {RUNS * n} (intent, run) pairs")
        figures.append((f"paper.intents_per_s (backlog of {n}, 5 runs)", n / (t_done - t_started), "intents/s"))
        figures.append(("paper.decisions_per_s", RUNS * n / (t_done - t_started), "decisions/s"))
        figures.append(("paper.startup_s (load runs, catch up books)", t_started - t0, "s"))
        figures.append(("paper.taken_fraction", taken / decisions, ""))
        # steady-rate latency, measured by another process
        await asyncio.sleep(2.5)  # the backlog's trades settle first
        probe = await run_probe(stack.nats_url, rate, latency_s, t_book)
        figures.append(
            ("paper.intent_to_decision_made_p50 (intent published -> decided)", probe["decided_p50_ms"], "ms")
        )
        figures.append(
            ("paper.intent_to_decision_made_p99 (intent published -> decided)", probe["decided_p99_ms"], "ms")
        )
        figures.append(("paper.intent_to_decision_p50 (-> its RunUpdate stored and received)", probe["p50_ms"], "ms"))
        figures.append(("paper.intent_to_decision_p99 (-> its RunUpdate stored and received)", probe["p99_ms"], "ms"))
        figures.append(("paper.latency_rate_offered", probe["rate"], "intents/s"))
    finally:
        await stack.close()
    return figures


async def publish_raw(bus: Bus, payloads: list[bytes], ids: list[str], window: int = 2_000) -> None:
    """Publish into JetStream (each stored with its Nats-Msg-Id), `window` acks in flight."""
    pending: list[Any] = []
    for data, id in zip(payloads, ids, strict=True):
        pending.append(bus.js.publish(subjects.intent("xarb"), data, headers={"Nats-Msg-Id": id}))
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def probe(url: str, rate: float, seconds: float, book_ts: int) -> dict[str, float]:
    """Publish intents at `rate` for `seconds`; per decision, intent ts → its RunUpdate's arrival."""
    bus = await Bus.connect(url, name="bench-probe")
    lat: list[int] = []
    decided: list[int] = []
    when: list[int] = []
    want = 0
    dec = codec.decoder(RunUpdate)
    done = asyncio.Event()

    async def on_update(msg: Any) -> None:
        arrived = time.time_ns()
        u = dec.decode(msg.data)
        for ts, at in zip(u.decisions.intent_ts, u.decisions.ts, strict=True):
            lat.append(arrived - ts)
            decided.append(at - ts)
            when.append(ts)
        if want and len(lat) >= want:
            done.set()

    await bus.nc.subscribe(subjects.PAPER_UPDATE_ALL, cb=on_update)
    await bus.nc.flush()
    n = int(rate * seconds)
    todo = intents(n, book_ts, seed=2, prefix="p")
    t0 = time.perf_counter()
    for i, it in enumerate(todo):
        ts = time.time_ns()
        await bus.nc.publish(  # core publish into the stream: no ack wait in the publisher's loop
            subjects.intent("xarb"), codec.encode(msgspec.structs.replace(it, ts=ts)), headers={"Nats-Msg-Id": it.id}
        )
        delay = t0 + (i + 1) / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    elapsed = time.perf_counter() - t0
    want = n * RUNS
    if len(lat) < want:
        await asyncio.wait_for(done.wait(), 60)
    await bus.close()
    arr = np.array(lat[:want]) / 1e6
    sec = (np.array(when[:want]) - min(when)) // 1_000_000_000
    by_second = {int(s): round(float(np.percentile(arr[sec == s], 99)), 2) for s in np.unique(sec)}
    made = np.array(decided[:want]) / 1e6
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "decided_p50_ms": float(np.percentile(made, 50)),
        "decided_p99_ms": float(np.percentile(made, 99)),
        "rate": n / elapsed,
        "p99_by_second_ms": by_second,
    }


def engine_figure(n: int = 50_000, batch: int = 512) -> tuple[str, float, str]:
    """Decisions per second of the engine alone (5 runs, the same mix)."""
    t = now_ns()
    h = BookHistory()
    for b in books(t):
        h.add(b)
    engine = Engine(EngineSettings(), h, MarketFacts(), fee_models())
    todo = [msgspec.structs.replace(it, ts=t) for it in intents(n, t)]

    def runs() -> list[RunLimits]:
        return [
            RunLimits(f"r{r}", USER, 5_000, 1_000_000_000, 10**15, 500_000_000, 10_000_000_000, {}) for r in range(RUNS)
        ]

    def go() -> None:
        limits = runs()
        for s in range(0, n, batch):
            chunk = todo[s : s + batch]
            prep = engine.prepare(chunk)
            outs = engine.decide(prep, limits, np.ones((len(chunk), RUNS), bool), t)
            for lim, out in zip(limits, outs, strict=True):
                if out is not None:
                    lim.balance_micros = out.balance_micros
                    lim.spent_by_day = out.spent_by_day

    go()  # compile, warm
    t0 = time.perf_counter()
    go()
    return ("paper.engine_decisions_per_s (no bus, 5 runs)", RUNS * n / (time.perf_counter() - t0), "decisions/s")


async def floor_figures(home: Path, rate: float, seconds: float) -> list[tuple[str, float, str]]:
    """The probe against a stand-in consumer: decode, store 5 tiny RunUpdates per batch, ack."""
    import structlog

    from proto.paper import DecisionColumns, RunConfig, RunSnapshot
    from services.paper.consumer import OrderedConsumer

    settings = config.load({}, home=home, http_port=0, log_level="warning")
    stack = await Stack.open(settings, with_store=False)
    try:
        bus = await stack.connect("floor")
        cfg = RunConfig(
            run_id="floor", user_id="u", starting_micros=1, min_net_edge_micros=0, max_leg_micros=1,
            daily_cap_micros=1, settlement_delay_ns=0, started_at=0, ends_at=1,
        )  # fmt: skip
        batches = [0]

        async def handler(pairs: list[tuple[Intent, int]]) -> Any:
            batches[0] += 1
            ts = [p[0].ts for p in pairs]
            snap = RunSnapshot(version=batches[0], state="running", balance_micros=1)
            decided = now_ns()
            cols = DecisionColumns(intent_ts=ts, ts=[decided] * len(ts), id=[p[0].id for p in pairs])
            return asyncio.gather(
                *(
                    bus.publish(
                        subjects.paper("update", f"floor{r}"),
                        RunUpdate(id=f"f{batches[0]}-{r}", ts=now_ns(), run=cfg, snapshot=snap, decisions=cols),
                    )
                    for r in range(RUNS)
                )
            )

        consumer = await OrderedConsumer(
            bus, stream=streams.INTENT.name, durable="floor", filter_subject=subjects.INTENT_ALL, kind=Intent,
            handler=handler, log=structlog.get_logger(),
        ).start()  # fmt: skip
        probe_out = await run_probe(stack.nats_url, rate, seconds, now_ns())
        await consumer.stop()
        await consumer.finish(1.0)
    finally:
        await stack.close()
    return [
        ("paper.latency_floor_p50 (no paper logic)", probe_out["p50_ms"], "ms"),
        ("paper.latency_floor_p99 (no paper logic)", probe_out["p99_ms"], "ms"),
    ]


async def run_probe(url: str, rate: float, seconds: float, book_ts: int) -> dict[str, float]:
    """`probe` in another process (so it does not share the measured service's event loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.benchmarks.paper", "--probe", url, str(rate), str(seconds), str(book_ts),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    out, _ = await proc.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


def run(n: int = 100_000, rate: float = 1_000.0, latency_s: float = 5.0) -> list[tuple[str, float, str]]:
    """Every paper figure (for tests/benchmarks/__main__.py)."""
    figures = [engine_figure()]
    with tempfile.TemporaryDirectory() as tmp:
        figures += asyncio.run(service_figures(Path(tmp) / "paper", n, rate, latency_s))
        figures += asyncio.run(floor_figures(Path(tmp) / "floor", rate, latency_s))
    return figures


def main() -> None:
    for name, value, unit in run():
        line(name, value, unit)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        url, rate, seconds, book_ts = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(asyncio.run(probe(url, rate, seconds, book_ts))), flush=True)
    else:
        from libs import log

        log.setup("console", "warning")
        main()
