"""The `markettwin` command: run the stack embedded or one service, the demo, the report, sim jobs,
market data (generate, replay, venue markets and recordings, OHLCV bars)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec

from libs import config, log
from libs.bus import NatsServerError
from libs.config import ConfigError, Settings
from libs.store import StoreError
from services import cli_bars, cli_ingest, cli_markets, cli_users
from services.demo import UP_ORDER, DrainTimeout


def _ordered(names: list[str]) -> list[str]:
    known = [n for n in UP_ORDER if n in names]
    return known + sorted(set(names) - set(known))


def _signal_event() -> asyncio.Event:
    """An event set by SIGINT/SIGTERM, installed before anything starts so nothing is orphaned."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def cmd_up(settings: Settings, names: list[str], with_store: bool = True) -> int:
    from services.runtime import Stack

    stop = _signal_event()
    stack = await Stack.open(settings, with_store=with_store)
    try:
        for name in _ordered(names):
            if stop.is_set():
                break
            await stack.start(name)
        print(f"markettwin up: {', '.join(stack.running)} on {stack.nats_url}", file=sys.stderr, flush=True)
        if stack.server is not None:
            print(f"NATS WebSocket for dashboards: {stack.server.ws_url}", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await stack.close()
    return 0


async def cmd_run(settings: Settings, name: str) -> int:
    from services.runtime import service_class

    if not settings.nats_url:
        raise ConfigError("markettwin run needs NATS_URL (e.g. nats://nats:4222); use `markettwin up` to embed one")
    # paper reads users' exchange keys from ClickHouse when it validates against the live venues
    uses_store = service_class(name).uses_store or (name == "paper" and settings.paper_validation == "live")
    if uses_store and not settings.clickhouse_url:
        raise ConfigError(
            f"markettwin run {name} needs CLICKHOUSE_URL (e.g. http://user:pass@clickhouse:8123/markettwin); "
            "the embedded chDB belongs to `markettwin up`"
        )
    return await cmd_up(settings, [name], with_store=uses_store)


async def cmd_demo(
    settings: Settings, synthetic_s: float, replay_speed: float | None, keep: bool, sim_runs: int, market_data: bool
) -> int:
    from services.demo import run_demo
    from services.report.summary import render

    if not keep:  # only what the embedded mode itself keeps there; never the whole MT_HOME
        for sub in ("nats", "clickhouse"):
            shutil.rmtree(settings.home / sub, ignore_errors=True)
    await run_demo(
        settings,
        synthetic_s=synthetic_s,
        replay_speed=replay_speed,
        sim_runs=sim_runs,
        on_report=lambda report: print(render(report), flush=True),
        market_data=market_data,
    )
    return 0


def cmd_report(settings: Settings, as_json: bool) -> int:
    from libs.store import open_store
    from services.report.summary import build, render

    store = open_store(settings)
    try:
        store.migrate()
        report = build(store)
    finally:
        store.close()
    print(msgspec.json.format(msgspec.json.encode(report)).decode() if as_json else render(report))
    return 0


SIM_WARM_SCENARIOS = ("normal", "flash_crash")
"""The pre-run baseline set (`sim warm-cache`): these scenarios for every calibration."""


def _sim_parser(sub: Any) -> None:
    """`markettwin sim ...`: simulation jobs through the client, against NATS_URL."""
    sim = sub.add_parser("sim", help="simulation jobs: calibrate, run, status, results, data (needs NATS_URL)")
    verbs = sim.add_subparsers(dest="sim_cmd", required=True)
    cal = verbs.add_parser("calibrate", help="calibrate on a LOBSTER day (file or folder) and publish it")
    cal.add_argument("path")
    cal.add_argument("--symbol", help="store it under this symbol (default: the file's)")
    cal.add_argument("--market", choices=["XNYS", "XHKG"], help="default: from the symbol")
    run = verbs.add_parser("run", help="submit a Monte Carlo job")
    run.add_argument("--symbol", required=True)
    run.add_argument("--cal-date", required=True, help="YYYY-MM-DD with a complete calibration (`sim symbols`)")
    run.add_argument("--n-runs", type=int, default=100)
    run.add_argument("--seed", type=int, default=42)
    run.add_argument("--scenario", default="normal")
    run.add_argument("--param", action="append", default=[], metavar="K=V", help="scenario parameter (repeat)")
    run.add_argument("--algo", action="append", default=[], metavar="JSON_OR_FILE", help="exec algo config (repeat)")
    run.add_argument("--wait", action="store_true", help="wait with a progress bar, then print the results")
    status = verbs.add_parser("status", help="a job's status")
    status.add_argument("job_id")
    jobs = verbs.add_parser("jobs", help="past jobs, newest first")
    jobs.add_argument("--limit", type=int, default=20)
    results = verbs.add_parser("results", help="every run of a job: status, files, metrics")
    results.add_argument("job_id")
    data = verbs.add_parser("data", help="one output file of one sim, to a Parquet file")
    data.add_argument("sim_id")
    data.add_argument("--file", default="trades", help="trades, mid_price_by_min, l1, algo_fills, metrics")
    data.add_argument("--out", required=True, help="PATH.parquet")
    cached = verbs.add_parser("cached", help="the pre-run baseline simulations")
    cached.add_argument("--symbol")
    cached.add_argument("--scenario")
    verbs.add_parser("symbols", help="calibrated (symbol, date) pairs jobs can use")
    warm = verbs.add_parser("warm-cache", help="queue the pre-run baseline set for every calibration")
    warm.add_argument("--n-runs", type=int, default=10)
    warm.add_argument("--wait", action="store_true")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _scenario_params(pairs: list[str]) -> dict[str, Any]:
    """`k=v` pairs; a value that reads as JSON (15, 0.1, true) is taken as such, else as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {pair!r} must be KEY=VALUE (e.g. impact_multiplier=15)")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _algos(values: list[str]) -> list[dict[str, Any]]:
    """--algo values: JSON objects (or lists of them), inline or in a file."""
    out: list[dict[str, Any]] = []
    for value in values:
        path = Path(value)
        text = path.read_text() if path.is_file() else value
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--algo {value!r} is neither a JSON object nor a file holding one ({e})") from None
        items = parsed if isinstance(parsed, list) else [parsed]
        for item in items:
            if not isinstance(item, dict):
                raise ValueError(f"--algo {value!r}: each algo must be a JSON object, got {item!r}")
            out.append(item)
    return out


class _ProgressBar:
    """A one-line text progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, width: int = 30) -> None:
        self.width = width
        self.tty = sys.stderr.isatty()
        self.last = ""

    def __call__(self, status: dict[str, Any]) -> None:
        s = status["status_summary"]
        frac = float(status.get("progress", 0.0))
        filled = round(frac * self.width)
        done = s.get("completed", 0) + s.get("error", 0)
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {frac * 100:5.1f}%  {done}/{status['total_simulations']}"
            f" done, {s.get('running', 0)} running, {s.get('error', 0)} error"
        )
        if line != self.last:
            print(("\r" if self.tty else "") + line, end="" if self.tty else "\n", file=sys.stderr, flush=True)
            self.last = line

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr, flush=True)


SIM_SHOWN_METRICS = (
    "market.close_mid",
    "market.n_trades",
    "algo.fill_ratio",
    "algo.avg_fill_price",
    "algo.slippage_bps",
    "algo.implementation_shortfall_bps",
    "algo.market_impact_bps",
)
"""The metrics `sim run --wait` and `sim results` print per run (all are in `sim data --file metrics`)."""


def _print_results(results: dict[str, Any]) -> None:
    print(f"job {results['job_id']}: {results['completed']}/{results['total_simulations']} completed")
    for sim in results["simulations"]:
        shown = [k for k in SIM_SHOWN_METRICS if k in sim["metrics"]]
        metrics = ", ".join(f"{k}={sim['metrics'][k]:.6g}" for k in shown)
        detail = sim["error"] if sim["status"] == "error" else metrics
        print(f"  {sim['status']:<9} {sim['sim_id']}  {detail}")


def cmd_sim(settings: Settings, args: argparse.Namespace) -> int:
    from libs.client import MarketTwin

    if not settings.nats_url:
        raise ConfigError(
            "markettwin sim needs NATS_URL: the NATS server of a running MarketTwin "
            "(`markettwin up` prints it), e.g. NATS_URL=nats://127.0.0.1:4222"
        )
    with MarketTwin(settings.nats_url) as mt:
        sim = mt.simulation
        cmd = args.sim_cmd
        if cmd == "calibrate":
            _print_json(sim.calibrate(args.path, symbol=args.symbol, market=args.market))
        elif cmd == "run":
            job = sim.run(
                symbol=args.symbol,
                cal_date=args.cal_date,
                n_runs=args.n_runs,
                seed=args.seed,
                scenario=args.scenario,
                scenario_params=_scenario_params(args.param),
                exec_algos=_algos(args.algo),
            )
            print(f"job {job['job_id']}: {job['total_simulations']} simulations queued")
            if args.wait:
                bar = _ProgressBar()
                try:
                    sim.wait(job["job_id"], progress=bar)
                finally:
                    bar.close()
                _print_results(sim.get_job_results(job["job_id"]))
        elif cmd == "status":
            _print_json(sim.get_job_status(args.job_id))
        elif cmd == "jobs":
            listing = sim.get_jobs(limit=args.limit)
            print(f"{listing['total']} jobs")
            for j in listing["jobs"]:
                print(
                    f"  {j['job_id']}  {j['created_at']}  {j['symbol']} {j['cal_date']} {j['scenario']}"
                    f"  {len(j['sim_ids'])} sims{'  (cached)' if j['cached'] else ''}"
                )
        elif cmd == "results":
            _print_results(sim.get_job_results(args.job_id))
        elif cmd == "data":
            frame = sim.get_sim_data(args.sim_id, args.file)
            frame.write_parquet(args.out)
            print(f"{frame.height} rows x {frame.width} columns ({', '.join(frame.columns)}) -> {args.out}")
        elif cmd == "cached":
            _print_json(sim.list_cached(symbol=args.symbol, scenario=args.scenario))
        elif cmd == "symbols":
            _print_json(sim.get_available_symbols())
        elif cmd == "warm-cache":
            symbols = sim.get_available_symbols()["symbols"]
            if not symbols:
                raise ValueError("no calibration yet: run `markettwin sim calibrate PATH` first")
            job_ids = []
            for s in symbols:
                for scenario in SIM_WARM_SCENARIOS:
                    job = sim.run(s["symbol"], s["date"], n_runs=args.n_runs, scenario=scenario, cached=True)
                    job_ids.append(job["job_id"])
                    print(f"job {job['job_id']}: {s['symbol']} {s['date']} {scenario}, {args.n_runs} runs")
            if args.wait:
                for job_id in job_ids:
                    sim.wait(job_id)
                print(f"{len(job_ids)} cached jobs complete")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `markettwin` console script."""
    from services.runtime import service_names

    p = argparse.ArgumentParser(prog="markettwin", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="every service in one process, with an embedded nats-server and chDB")
    up.add_argument("--services", default=",".join(service_names()), help="comma list (default: all)")
    run = sub.add_parser("run", help="one service, against NATS_URL and CLICKHOUSE_URL")
    run.add_argument("service", choices=service_names())
    demo = sub.add_parser(
        "demo",
        help="the Fed replay and the synthetic market with the report, market data (replays, a generator, "
        "the bar manager), then simulation jobs",
    )
    demo.add_argument("--synthetic-seconds", type=float, default=15.0)
    demo.add_argument("--replay-speed", type=float, default=200_000.0, help="N x real time; 0 = as fast as possible")
    demo.add_argument("--keep", action="store_true", help="keep earlier data under MT_HOME")
    demo.add_argument("--sim-runs", type=int, default=8, help="Monte Carlo runs of the simulation job (0: none)")
    demo.add_argument("--no-market-data", action="store_true", help="skip the replays, generator and bar manager")
    rep = sub.add_parser("report", help="print the run report from ClickHouse")
    rep.add_argument("--json", action="store_true")
    sub.add_parser("schema", help="export JSON Schema for every event to proto/schema/")
    sub.add_parser("services", help="list the services")
    _sim_parser(sub)
    cli_ingest.add_ingest_parsers(sub)
    cli_markets.add_markets_parser(sub)
    cli_bars.add_bars_parser(sub)
    cli_users.add_users_parser(sub)
    args = p.parse_args(argv)

    try:
        settings = config.load()
        log.setup(settings.log_format, settings.log_level)
        if args.cmd == "up":
            names = [s for s in args.services.split(",") if s]
            unknown = set(names) - set(service_names())
            if unknown:
                raise ConfigError(f"--services names unknown service(s): {', '.join(sorted(unknown))}")
            return asyncio.run(cmd_up(settings, names))
        if args.cmd == "run":
            return asyncio.run(cmd_run(settings, args.service))
        if args.cmd == "demo":
            speed = args.replay_speed or None
            return asyncio.run(
                cmd_demo(settings, args.synthetic_seconds, speed, args.keep, args.sim_runs, not args.no_market_data)
            )
        if args.cmd == "report":
            return cmd_report(settings, args.json)
        if args.cmd == "schema":
            from proto.schema_export import export

            for path in export():
                print(path)
            return 0
        if args.cmd == "services":
            print("\n".join(service_names()))
            return 0
        if args.cmd == "sim":
            return cmd_sim(settings, args)
        if args.cmd == "generate":
            return asyncio.run(cli_ingest.cmd_generate(settings, args))
        if args.cmd == "replay":
            return asyncio.run(cli_ingest.cmd_replay(settings, args))
        if args.cmd in cli_markets.MARKET_COMMANDS:
            return cli_markets.cmd_markets(settings, args)
        if args.cmd == "bars":
            return cli_bars.cmd_bars(settings, args)
        if args.cmd == "users":
            return cli_users.cmd_users(settings, args)
    except (ConfigError, ValueError, OSError, StoreError, NatsServerError, DrainTimeout) as e:
        print(f"markettwin: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
