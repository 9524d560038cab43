"""The `markettwin` command: run the stack embedded or one service, the demo, the report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys

import msgspec

from libs import config, log
from libs.bus import NatsServerError
from libs.config import ConfigError, Settings
from libs.store import StoreError
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
    uses_store = service_class(name).uses_store
    if uses_store and not settings.clickhouse_url:
        raise ConfigError(
            f"markettwin run {name} needs CLICKHOUSE_URL (e.g. http://user:pass@clickhouse:8123/markettwin); "
            "the embedded chDB belongs to `markettwin up`"
        )
    return await cmd_up(settings, [name], with_store=uses_store)


async def cmd_demo(settings: Settings, synthetic_s: float, replay_speed: float | None, keep: bool) -> int:
    from services.demo import run_demo
    from services.report.summary import render

    if not keep:  # only what the embedded mode itself keeps there; never the whole MT_HOME
        for sub in ("nats", "clickhouse"):
            shutil.rmtree(settings.home / sub, ignore_errors=True)
    report = await run_demo(settings, synthetic_s=synthetic_s, replay_speed=replay_speed)
    print(render(report))
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `markettwin` console script."""
    from services.runtime import service_names

    p = argparse.ArgumentParser(prog="markettwin", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="every service in one process, with an embedded nats-server and chDB")
    up.add_argument("--services", default=",".join(service_names()), help="comma list (default: all)")
    run = sub.add_parser("run", help="one service, against NATS_URL and CLICKHOUSE_URL")
    run.add_argument("service", choices=service_names())
    demo = sub.add_parser("demo", help="replay the Fed market, run the synthetic one, print the report")
    demo.add_argument("--synthetic-seconds", type=float, default=15.0)
    demo.add_argument("--replay-speed", type=float, default=200_000.0, help="N x real time; 0 = as fast as possible")
    demo.add_argument("--keep", action="store_true", help="keep earlier data under MT_HOME")
    rep = sub.add_parser("report", help="print the run report from ClickHouse")
    rep.add_argument("--json", action="store_true")
    sub.add_parser("schema", help="export JSON Schema for every event to proto/schema/")
    sub.add_parser("services", help="list the services")
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
            return asyncio.run(cmd_demo(settings, args.synthetic_seconds, speed, args.keep))
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
    except (ConfigError, ValueError, OSError, StoreError, NatsServerError, DrainTimeout) as e:
        print(f"markettwin: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
