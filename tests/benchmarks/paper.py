"""Paper service throughput and latency, on a real nats-server with 5 active runs.

- `paper.intents_per_s`: a backlog of N intents (default 100,000) waiting in the INTENT stream is
  decided by a freshly (re)started paper service with 5 running runs: intents / (time from the
  service's start until its durable consumer has acked the last one). Each intent is decided by all
  5 runs: every decision and trade is in a RunUpdate stored in JetStream before the intent is acked.
- `paper.intent_to_decision_made_p50` / `_p99 @<rate>/s`: intents published at a steady rate (250,
  500 and 1,000 a second; ROUNDS rounds of 5 s each, the median round's figure, and the worst
  round's p99 as `_p99_worst_round`) by another process, which subscribes to `paper.update.>` and
  takes, per decision, the time from the intent's `ts` (stamped just before publishing) to the
  decision's own `ts` (stamped by the paper service once the engine's kernel has decided it): core
  NATS delivery to the hot path, the checks and the fills. Wall clock of one machine, both processes.
  The probe only keeps the updates while it publishes and decodes them afterwards: decoding them
  as they came delayed its own publishes, which the figure then counted as paper's latency.
- `paper.intent_to_decision_p50` / `_p99 @<rate>/s`: the same decisions, to the arrival of the
  RunUpdate carrying them (stored in JetStream first; a run's updates go out at most every 20 ms).
- `paper.cpu_steal_pct @<rate>/s`: the share of this (virtual) machine's CPU time the hypervisor
  gave to other guests during paper's rounds (/proc/stat steal). Rounds with steal show stalls of
  2-8 ms in every callback, paper's or not: their p99 measures the host.
- `paper.hot_path_fraction @<rate>/s`: the probe's intents decided from their core-NATS copy (the
  rest were decided when JetStream delivered them); `paper.service_cpu_per_intent`: the service's
  CPU time per intent while the probe ran (5 runs deciding, storing, sending live events).
- `paper.latency_floor_core_*`: the same probe against a stand-in with no paper logic that answers
  each intent from core NATS with 5 tiny RunUpdates (what the hot path's transport costs by itself
  on this machine), on the same server, each of its rounds right after a paper round: the machine's
  noise moves both alike. The stand-in lives in the benchmark's process, beside the paper service
  (idle then but for its timers: settling the round's trades, storing, live events), so the floor
  errs high if anything. `paper.p99_over_floor`: paper's p99 minus the floor's, per pair of
  rounds (median), what paper's own work adds at the tail. `paper.latency_floor_jetstream_*`: a
  stand-in taking intents from a durable JetStream consumer, the path paper used before the hot
  path.
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
says how the mix came out. Every latency round has runs of its own: the bench user's running runs
are stopped and 5 fresh $10,000 ones started before it, so each round decides the same workload.
Runs carried from round to round compounded the mix's 4c edge: by the 1,000/s rounds their cash had
grown ~40x (so ~3x the trades a second) and every update carried ~2,500 traded opportunities (the
bench never closes one), a load that depended on how many rounds ran before.
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
from libs.bus import Bus, subscriptions_live
from libs.fees import fee_models
from libs.ids import now_ns
from libs.paper.books import BookHistory, MarketFacts
from libs.paper.engine import Engine, EngineSettings, RunLimits
from proto import codec, streams, subjects
from proto.events import BookBatch, Intent, Leg
from proto.paper import PaperReply, RunUpdate, StartRequest, StartRun, StopRun, UserQuery
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


async def fresh_runs(bus: Bus) -> None:
    """Stop the bench user's running runs (if any) and start RUNS new $10,000 ones."""
    r = await svc(bus, "active", UserQuery(user_id=USER))
    for view in r.runs:
        stopped = await svc(bus, "stop", StopRun(user_id=USER, run_id=view.run_id))
        assert stopped.status == 200, stopped.detail
    for _ in range(RUNS):
        r = await svc(bus, "start", StartRun(
            user_id=USER, request=StartRequest(starting_usd=10_000.0), min_net_edge_micros=5_000,
            max_leg_micros=1_000_000_000, daily_cap_micros=10**15))  # fmt: skip
        assert r.status == 201, r.detail


async def backlog_done(bus: Bus, durable: str, timeout_s: float) -> float:
    """Poll the consumer until nothing is pending or unacked; the time it was first seen so."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        info = await bus.js.consumer_info(streams.INTENT.name, durable)
        if not info.num_pending and not info.num_ack_pending:
            return time.perf_counter()
        await asyncio.sleep(0.01)
    raise TimeoutError(f"paper did not finish its backlog in {timeout_s:.0f}s")


async def service_figures(
    home: Path, n: int, rates: tuple[float, ...], latency_s: float
) -> list[tuple[str, float, str]]:
    settings = config.load({}, home=home, http_port=0, paper_default_run=False, log_level="warning")
    stack = await Stack.open(settings, with_store=False)
    figures: list[tuple[str, float, str]] = []
    try:
        await stack.start("paper")
        bus = await stack.connect("bench")
        await fresh_runs(bus)
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
        service: Any = await stack.start("paper")
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
        # steady-rate latency, measured by another process, at each rate, in rounds; each paper round
        # is followed by a round against the no-logic stand-in on the same server (the floor)
        floor_bus = await stack.connect("floor")
        await core_floor(floor_bus)
        for k, rate in enumerate(rates):
            probes, floors, steals = [], [], []
            hot_before = service.hot_decided
            cpu = 0.0
            for j in range(ROUNDS):
                await fresh_runs(bus)  # every round the same 5 $10,000 runs: P&L compounds within a round only
                await asyncio.sleep(2.5)  # the stopped runs' trades settle first
                cpu0, ticks0 = time.process_time(), cpu_ticks()
                probes.append(await run_probe(stack.nats_url, rate, latency_s, t_book, prefix=f"p{k}r{j}"))
                cpu += time.process_time() - cpu0
                steals.append(steal_pct(ticks0, cpu_ticks()))
                floors.append(
                    await run_probe(
                        stack.nats_url, rate, latency_s, t_book, f"c{k}r{j}", FLOOR_INTENTS, f"{FLOOR_UPDATES}.>"
                    )
                )
            intents_sent = max(1, round(rate * latency_s)) * ROUNDS
            at = f"@{rate:g}/s"
            figures += latency_lines(
                probes, at, "decided_", "paper.intent_to_decision_made", "intent published -> decided"
            )
            figures += latency_lines(probes, at, "", "paper.intent_to_decision", "-> its RunUpdate stored and received")
            figures += latency_lines(floors, at, "decided_", "paper.latency_floor_core", "no paper logic")
            over = [p["decided_p99_ms"] - f["decided_p99_ms"] for p, f in zip(probes, floors, strict=True)]
            figures += [
                (
                    f"paper.p99_over_floor {at} (paper's p99 - the floor's, rounds paired; median)",
                    float(np.median(over)),
                    "ms",
                ),
                (
                    f"paper.cpu_steal_pct {at} (the host's share of this VM's CPU in paper's rounds; median)",
                    float(np.median(steals)),
                    "%",
                ),
                (f"paper.latency_rate_offered {at}", float(np.mean([p["rate"] for p in probes])), "intents/s"),
                (f"paper.hot_path_fraction {at}", (service.hot_decided - hot_before) / intents_sent, ""),
                (f"paper.service_cpu_per_intent {at} (5 runs, stored)", cpu / intents_sent * 1e6, "us"),
            ]
    finally:
        await stack.close()
    return figures


def cpu_ticks() -> list[int] | None:
    """The machine's CPU time counters (/proc/stat: user … steal), None where there is no /proc."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return None


def steal_pct(before: list[int] | None, after: list[int] | None) -> float:
    """Percent of the CPU time between two `cpu_ticks` readings the hypervisor gave to others (steal):
    a round with steal measures the host more than paper (its long stalls land in the p99)."""
    if before is None or after is None:
        return float("nan")
    delta = [b - a for a, b in zip(before, after, strict=True)]
    return 100.0 * delta[7] / max(1, sum(delta))


def latency_lines(
    probes: list[dict[str, float]], at: str, key: str, name: str, what: str
) -> list[tuple[str, float, str]]:
    """p50 and p99 of the median round, and the worst round's p99 (this machine's noise, in one line)."""
    p50 = float(np.median([p[f"{key}p50_ms"] for p in probes]))
    p99s = [p[f"{key}p99_ms"] for p in probes]
    rounds = f"median of {len(probes)} rounds"
    return [
        (f"{name}_p50 {at} ({what}; {rounds})", p50, "ms"),
        (f"{name}_p99 {at} ({what}; {rounds})", float(np.median(p99s)), "ms"),
        (f"{name}_p99_worst_round {at}", float(max(p99s)), "ms"),
    ]


async def publish_raw(bus: Bus, payloads: list[bytes], ids: list[str], window: int = 2_000) -> None:
    """Publish into JetStream (each stored with its Nats-Msg-Id), `window` acks in flight."""
    pending: list[Any] = []
    for data, id in zip(payloads, ids, strict=True):
        pending.append(bus.js.publish(subjects.intent("xarb"), data, headers={"Nats-Msg-Id": id}))
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def probe(
    url: str, rate: float, seconds: float, book_ts: int, prefix: str, to: str = "", updates: str = ""
) -> dict[str, float]:
    """Publish intents (ids `<prefix>…`) on `to` (default: detect's intent subject) at `rate` for
    `seconds`; per decision of one of them (RunUpdates on `updates`, default paper's), intent ts → the
    decision's ts, and → the arrival of the RunUpdate carrying it."""
    bus = await Bus.connect(url, name="bench-probe")
    lat: list[int] = []
    decided: list[int] = []
    received: list[tuple[int, bytes]] = []
    want = 0
    dec = codec.decoder(RunUpdate)
    done = asyncio.Event()

    def take(arrived: int, data: bytes) -> None:
        d = dec.decode(data).decisions
        for intent_id, ts, at in zip(d.intent_id, d.intent_ts, d.ts, strict=True):
            if intent_id.startswith(prefix):
                lat.append(arrived - ts)
                decided.append(at - ts)

    async def on_update(msg: Any) -> None:
        if not want:  # publishing: the update is read afterwards, so the probe's loop stays free to publish
            received.append((time.time_ns(), msg.data))
            return
        take(time.time_ns(), msg.data)
        if len(lat) >= want:
            done.set()

    await bus.nc.subscribe(updates or subjects.PAPER_UPDATE_ALL, cb=on_update)
    await subscriptions_live(bus.nc)
    n = int(rate * seconds)
    todo = intents(n, book_ts, seed=2, prefix=prefix)
    t0 = time.perf_counter()
    for i, it in enumerate(todo):
        ts = time.time_ns()
        await bus.nc.publish(  # core publish into the stream: no ack wait in the publisher's loop
            to or subjects.intent("xarb"),
            codec.encode(msgspec.structs.replace(it, ts=ts)),
            headers={"Nats-Msg-Id": it.id},
        )
        delay = t0 + (i + 1) / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    elapsed = time.perf_counter() - t0
    for arrived, data in received:
        take(arrived, data)
    want = n * RUNS
    if len(lat) < want:
        await asyncio.wait_for(done.wait(), 60)
    await bus.close()
    arr = np.array(lat[:want]) / 1e6
    made = np.array(decided[:want]) / 1e6
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "decided_p50_ms": float(np.percentile(made, 50)),
        "decided_p99_ms": float(np.percentile(made, 99)),
        "rate": n / elapsed,
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


FLOOR_INTENTS = "bench.floor.intent"
FLOOR_UPDATES = "bench.floor.update"
"""The core stand-in's subjects: core NATS only, outside every stream (so paper never sees them)."""


def floor_updates(batch: list[Intent], step: int, prefix: str) -> list[tuple[str, RunUpdate]]:
    """What the stand-ins answer a batch with: 5 tiny RunUpdates (one per run) naming its intents."""
    from proto.paper import DecisionColumns, RunConfig, RunSnapshot

    cfg = RunConfig(
        run_id="floor", user_id="u", starting_micros=1, min_net_edge_micros=0, max_leg_micros=1,
        daily_cap_micros=1, settlement_delay_ns=0, started_at=0, ends_at=1,
    )  # fmt: skip
    ts = [o.ts for o in batch]
    snap = RunSnapshot(version=step, state="running", balance_micros=1)
    cols = DecisionColumns(intent_ts=ts, ts=[now_ns()] * len(ts), intent_id=[o.id for o in batch])
    return [
        (f"{prefix}.floor{r}", RunUpdate(id=f"f{step}-{r}", ts=now_ns(), run=cfg, snapshot=snap, decisions=cols))
        for r in range(RUNS)
    ]


async def core_floor(bus: Bus) -> None:
    """The stand-in for paper's hot path with no paper logic: each intent on FLOOR_INTENTS, as core
    NATS delivers it, is answered at once with floor_updates on core NATS (what the hot path's
    transport costs by itself; the intents are not stored, which core delivery never waits for)."""
    decoder = codec.decoder(Intent)
    steps = [0]

    async def on_core(msg: Any) -> None:
        steps[0] += 1
        for subject, u in floor_updates([decoder.decode(msg.data)], steps[0], FLOOR_UPDATES):
            await bus.publish_core(subject, u)

    await bus.nc.subscribe(FLOOR_INTENTS, cb=on_core)
    await subscriptions_live(bus.nc)


async def floor_figures(home: Path, rates: tuple[float, ...], seconds: float) -> list[tuple[str, float, str]]:
    """The probe against a stand-in with no paper logic that takes intents from a durable JetStream
    consumer and stores floor_updates before acking: the floor of the JetStream path paper used
    before the hot path."""
    import structlog

    from services.paper.consumer import OrderedConsumer

    settings = config.load({}, home=home, http_port=0, log_level="warning")
    stack = await Stack.open(settings, with_store=False)
    figures: list[tuple[str, float, str]] = []
    try:
        bus = await stack.connect("floor")
        steps = [0]

        async def handler(pairs: list[tuple[Intent, int]]) -> Any:
            steps[0] += 1
            batch = floor_updates([p[0] for p in pairs], steps[0], "paper.update")
            return asyncio.gather(*(bus.publish(subject, u) for subject, u in batch))

        consumer = await OrderedConsumer(
            bus, stream=streams.INTENT.name, durable="floor", filter_subject=subjects.INTENT_ALL, kind=Intent,
            handler=handler, log=structlog.get_logger(),
        ).start()  # fmt: skip
        rate = max(rates)
        probes = [await run_probe(stack.nats_url, rate, seconds, now_ns(), prefix=f"j{j}") for j in range(ROUNDS)]
        await consumer.stop()
        await consumer.finish(1.0)
        figures += latency_lines(probes, f"@{rate:g}/s", "decided_", "paper.latency_floor_jetstream", "no paper logic")
    finally:
        await stack.close()
    return figures


async def run_probe(
    url: str, rate: float, seconds: float, book_ts: int, prefix: str, to: str = "", updates: str = ""
) -> dict[str, float]:
    """`probe` in another process (so it does not share the measured service's event loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.benchmarks.paper", "--probe", url, str(rate), str(seconds), str(book_ts), prefix,
        to, updates, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    out, _ = await proc.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


LATENCY_RATES = (250.0, 500.0, 1_000.0)
ROUNDS = 3
"""Latency probes per rate: this shared 2-core machine's noise moves one 5 s round's p99 by 2-3x, so
the median round is the figure, and the worst round is printed beside it."""


def run(
    n: int = 100_000, rates: tuple[float, ...] = LATENCY_RATES, latency_s: float = 5.0
) -> list[tuple[str, float, str]]:
    """Every paper figure (for tests/benchmarks/__main__.py)."""
    figures = [engine_figure()]
    with tempfile.TemporaryDirectory() as tmp:
        figures += asyncio.run(service_figures(Path(tmp) / "paper", n, rates, latency_s))
        figures += asyncio.run(floor_figures(Path(tmp) / "floor", rates, latency_s))
    return figures


def main() -> None:
    for name, value, unit in run():
        line(name, value, unit)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        url, rate, seconds, book_ts, prefix, to, updates = (
            sys.argv[2],
            float(sys.argv[3]),
            float(sys.argv[4]),
            int(sys.argv[5]),
            sys.argv[6],
            sys.argv[7],
            sys.argv[8],
        )
        print(json.dumps(asyncio.run(probe(url, rate, seconds, book_ts, prefix, to, updates))), flush=True)
    else:
        from libs import log

        log.setup("console", "warning")
        main()
