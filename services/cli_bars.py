"""`markettwin bars ...`: the OHLCV bar manager from the command line (import, resample, completeness, gaps, show).

Every verb opens the store the settings describe (`libs.store.open_store`), migrates it and
closes it; results print as JSON, `show` as a table headed `showing <rows> of <bars in the range> bars`.
A symbol's asset class is `--asset-class`, else MT_BARS_ASSET_OVERRIDES, else the symbol rule
(`libs.bars.assets`). `import` warns on stderr when over 10% of a file's 1-minute bars are outside
the sessions (naive times read as UTC where they were local: is --tz right?).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

import msgspec

from libs.bars.assets import ASSET_CLASSES, TIMEFRAMES, AssetClass, parse_overrides, resolve_assets
from libs.bars.calendars import session_of
from libs.bars.completeness import THRESHOLD_PCT, analyse, validate_stored
from libs.bars.importer import OUTSIDE_WARN_FRACTION, SESSION_NAMES, ImportResult, import_file
from libs.bars.resample import RESAMPLE_TARGETS
from libs.bars.store import bar_range, count_bars, read_bars, resample_stored, stored_symbols
from libs.bars.timeutil import parse_date
from libs.config import Settings
from libs.store import open_store


def _date(text: str) -> dt.date:
    try:
        return parse_date(text, "date")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _time(text: str) -> dt.datetime:
    """A date or an ISO date-time; naive times are UTC."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or ISO time: {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def add_bars_parser(subparsers: Any) -> None:
    """Add `bars` and its verbs to the `markettwin` sub-command parsers."""
    bars = subparsers.add_parser("bars", help="OHLCV bars: import, resample, completeness, gaps, show")
    verbs = bars.add_subparsers(dest="bars_cmd", required=True)
    asset = {"choices": ASSET_CLASSES, "default": None, "help": "override the class inferred from the symbol"}

    imp = verbs.add_parser("import", help="import a CSV/Parquet bar file (1-minute or daily) and resample it")
    imp.add_argument("file")
    imp.add_argument("--symbol", required=True)
    imp.add_argument("--asset-class", **asset)
    imp.add_argument("--tz", default="UTC", help="zone of naive times in the file (default UTC)")
    imp.add_argument("--no-resample", action="store_true", help="store the 1-minute bars only")

    res = verbs.add_parser("resample", help="resample stored 1-minute bars to every timeframe")
    res.add_argument("symbol")
    res.add_argument("--start", type=_date, help="first session date (default: the first stored bar)")
    res.add_argument("--end", type=_date, help="last session date (default: the last stored bar)")
    res.add_argument("--asset-class", **asset)

    comp = verbs.add_parser("completeness", help="completeness report of stored 1-minute bars (JSON)")
    comp.add_argument("symbols", nargs="+")
    comp.add_argument("--start", type=_date, required=True)
    comp.add_argument("--end", type=_date, required=True)
    comp.add_argument("--details", action="store_true", help="include every day's validation and gaps")
    comp.add_argument("--threshold", type=float, default=THRESHOLD_PCT, help="flag symbols under this percent")
    comp.add_argument("--asset-class", **asset)

    gaps = verbs.add_parser("gaps", help="one session of one symbol: missing minutes and bars outside it")
    gaps.add_argument("symbol")
    gaps.add_argument("--date", type=_date, required=True)
    gaps.add_argument("--asset-class", **asset)

    show = verbs.add_parser("show", help="print stored bars")
    show.add_argument("symbol")
    show.add_argument("--timeframe", default="1min", choices=TIMEFRAMES)
    show.add_argument("--start", type=_time, help="from this date/time (inclusive, UTC unless an offset is given)")
    show.add_argument("--end", type=_time, help="to this date/time (exclusive)")
    show.add_argument("--limit", type=int, default=20)
    show.add_argument("--offset", type=int, default=0)
    show.add_argument("--desc", action="store_true", help="newest first")

    sym = verbs.add_parser(
        "symbols", help="symbols with stored bars of --timeframe (default 1min: daily-only ones need --timeframe daily)"
    )
    sym.add_argument("--timeframe", default="1min", choices=TIMEFRAMES)


def _print_json(value: Any) -> None:
    print(msgspec.json.format(msgspec.json.encode(value)).decode())


def _warn_outside(result: ImportResult) -> None:
    """A warning on stderr when more than OUTSIDE_WARN_FRACTION of the imported minutes are outside the sessions."""
    outside = result.rows_outside_sessions
    if not outside or outside <= OUTSIDE_WARN_FRACTION * result.rows_read:
        return
    where = SESSION_NAMES.get(result.asset_class, result.asset_class)
    print(
        f"warning: {outside} of {result.rows_read} 1-minute bars ({100 * outside / result.rows_read:.0f}%) are "
        f"outside the {where} sessions: is --tz right? (the file's times are read as UTC unless --tz says otherwise)",
        file=sys.stderr,
    )


def cmd_bars(settings: Settings, args: argparse.Namespace) -> int:
    """Run one `bars` verb; errors surface as ValueError/StoreError for `markettwin` to print."""
    configured = parse_overrides(settings.bars_asset_overrides)

    def asset_class(symbol: str, override: str | None) -> AssetClass:
        return resolve_assets([symbol], override, configured)[symbol]

    store = open_store(settings)
    try:
        store.migrate()
        cmd = args.bars_cmd
        if cmd == "import":
            asset = asset_class(args.symbol, args.asset_class)
            result = import_file(store, args.file, args.symbol, asset=asset, tz=args.tz, resample=not args.no_resample)
            _print_json(result)
            _warn_outside(result)
        elif cmd == "resample":
            asset = asset_class(args.symbol, args.asset_class)
            start, end = args.start, args.end
            if start is None or end is None:
                span = bar_range(store, args.symbol, "1min")
                if span is None:
                    raise ValueError(f"no 1-minute bars stored for {args.symbol!r}")
                start = start or span[0].date() - dt.timedelta(days=1)
                end = end or span[1].date() + dt.timedelta(days=1)
            rows = resample_stored(store, args.symbol, asset, start, end, RESAMPLE_TARGETS)
            _print_json({"symbol": args.symbol, "asset_class": asset, "start": start, "end": end, "rows": rows})
        elif cmd == "completeness":
            report = analyse(
                store,
                args.symbols,
                args.start,
                args.end,
                include_details=args.details,
                threshold_pct=args.threshold,
                asset_override=args.asset_class,
                configured_assets=configured,
            )
            _print_json(report)
        elif cmd == "gaps":
            asset = asset_class(args.symbol, args.asset_class)
            if session_of(asset, args.date) is None:
                raise ValueError(f"{args.date} has no {asset} trading session")
            _print_json(validate_stored(store, args.symbol, asset, args.date, args.date)[0])
        elif cmd == "show":
            frame = read_bars(
                store,
                args.symbol,
                args.timeframe,
                args.start,
                args.end,
                order="desc" if args.desc else "asc",
                limit=args.limit,
                offset=args.offset,
            )
            total = count_bars(store, args.symbol, args.timeframe, args.start, args.end)
            skipped = f" after skipping {args.offset}" if args.offset else ""
            print(f"{args.symbol} {args.timeframe}: showing {frame.height} of {total} bars{skipped}")
            for row in frame.iter_rows():
                ts, o, h, lo, c, v = row
                print(f"{ts:%Y-%m-%d %H:%M}Z  {o:>12.6g} {h:>12.6g} {lo:>12.6g} {c:>12.6g} {v:>16.10g}")
        elif cmd == "symbols":
            print("\n".join(stored_symbols(store, args.timeframe)))
        else:  # pragma: no cover - argparse enforces the choices
            raise ValueError(f"unknown bars command {cmd!r}")
    finally:
        store.close()
    return 0
