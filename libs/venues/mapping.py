"""The market mapping file: which Kalshi market and which Polymarket tokens are the same event.

TOML, one `[[pair]]` table per event (see deploy/markets.example.toml):

    [[pair]]
    opportunity_key = "FED-DEC25-NOCHANGE"   # the pair's name: detect's instrument, opportunity keys
    title = "Fed holds rates at the December 2025 FOMC"
    resolution_date = 2025-12-10             # TOML date (or date-time); required once confirmed
    orientation = "same"                     # "same": Polymarket YES is Kalshi YES; "inverted": it is Kalshi NO
    confirmed = true                         # only confirmed pairs are followed (proposals start false)
    [pair.kalshi]
    ticker = "KXFEDDECISION-25DEC-H0"
    rules = "Resolves Yes if the upper bound of the target range is unchanged ..."
    [pair.polymarket]
    yes_token = "1234..."                    # outcome token ids (decimal strings)
    no_token = "5678..."
    condition_id = "0x..."                   # optional
    rules = "..."

The pair's YES is Kalshi's YES. Books stay per venue instrument on the bus
(`md.book.kalshi.<ticker>`, `md.book.polymarket.<token>`); `MarketMap.translate` renames the
instruments that quote the pair's YES (Kalshi's ticker, and the Polymarket token that is Kalshi's
YES: `yes_token` when "same", `no_token` when "inverted") to `opportunity_key`, so a consumer that
pairs books by instrument (detect) sees one instrument on two venues.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import msgspec

from libs.venues import KALSHI, POLYMARKET
from libs.venues.errors import PayloadError
from libs.venues.kalshi import instrument_of
from proto.events import BookBatch
from proto.subjects import SubjectError, token

Orientation = Literal["same", "inverted"]
ORIENTATIONS = ("same", "inverted")


class MappingError(ValueError):
    """A mapping file that cannot be used: names the file, the pair, the field and the value."""


class KalshiSide(msgspec.Struct, frozen=True, kw_only=True):
    """The Kalshi market of a pair."""

    ticker: str
    rules: str = ""


class PolymarketSide(msgspec.Struct, frozen=True, kw_only=True):
    """The Polymarket outcome tokens of a pair."""

    yes_token: str
    no_token: str
    condition_id: str = ""
    question: str = ""
    rules: str = ""


class MarketPair(msgspec.Struct, frozen=True, kw_only=True):
    """One event quoted on both venues."""

    opportunity_key: str
    title: str = ""
    resolution_date: dt.date | None = None
    orientation: Orientation = "same"
    confirmed: bool = False
    kalshi: KalshiSide
    polymarket: PolymarketSide
    score: float | None = None
    """The proposer's match score (0-100), for candidates."""
    note: str = ""

    @property
    def kalshi_instrument(self) -> str:
        """The Kalshi instrument (subject token) of the ticker."""
        return instrument_of(self.kalshi.ticker)

    @property
    def polymarket_primary(self) -> str:
        """The Polymarket token quoting the pair's YES (Kalshi's YES)."""
        return self.polymarket.yes_token if self.orientation == "same" else self.polymarket.no_token


class MarketMap(msgspec.Struct, frozen=True, kw_only=True):
    """Every pair of a mapping file, and lookups over the confirmed ones."""

    path: str
    pairs: list[MarketPair]

    @property
    def confirmed(self) -> list[MarketPair]:
        """The pairs a person confirmed: the only ones followed."""
        return [p for p in self.pairs if p.confirmed]

    def kalshi_tickers(self) -> list[str]:
        """Tickers of the confirmed pairs, in file order."""
        return [p.kalshi.ticker for p in self.confirmed]

    def polymarket_tokens(self) -> list[str]:
        """YES and NO token ids of the confirmed pairs, in file order."""
        return [t for p in self.confirmed for t in (p.polymarket.yes_token, p.polymarket.no_token)]

    def aliases(self) -> dict[tuple[str, str], str]:
        """(venue, instrument) → opportunity_key, for the instruments quoting each pair's YES."""
        out: dict[tuple[str, str], str] = {}
        for p in self.confirmed:
            out[(KALSHI, p.kalshi_instrument)] = p.opportunity_key
            out[(POLYMARKET, p.polymarket_primary)] = p.opportunity_key
        return out

    def translate(self, batch: BookBatch) -> BookBatch | None:
        """The batch with its pair instruments renamed to their opportunity_key; other rows dropped.

        None when no row is of a mapped instrument (e.g. a Polymarket NO-terms book of a "same" pair).
        """
        aliases = self.aliases()
        names = [aliases.get((batch.venue, i)) for i in batch.instruments]
        if all(n is None for n in names):
            return None
        keep = [r for r, idx in enumerate(batch.inst_idx) if names[idx] is not None]
        new_names = sorted({names[batch.inst_idx[r]] for r in keep})  # type: ignore[type-var]
        index = {n: k for k, n in enumerate(new_names)}
        lv = batch.levels

        def rows(values: list[int]) -> list[int]:
            return [v for r in keep for v in values[r * lv : (r + 1) * lv]]

        return msgspec.structs.replace(
            batch,
            instruments=new_names,
            inst_idx=[index[names[batch.inst_idx[r]]] for r in keep],  # type: ignore[index]
            book_ts=[batch.book_ts[r] for r in keep],
            bid_px=rows(batch.bid_px),
            bid_sz=rows(batch.bid_sz),
            ask_px=rows(batch.ask_px),
            ask_sz=rows(batch.ask_sz),
        )


_PAIR_KEYS = {
    "opportunity_key",
    "title",
    "resolution_date",
    "orientation",
    "confirmed",
    "kalshi",
    "polymarket",
    "score",
    "note",
}
_KALSHI_KEYS = {"ticker", "rules"}
_POLY_KEYS = {"yes_token", "no_token", "condition_id", "question", "rules"}


def _text(table: dict[str, Any], field: str, where: str, required: bool) -> str:
    value = table.get(field)
    if value is None:
        if required:
            raise MappingError(f"{where}: field {field} is missing")
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise MappingError(f"{where}: field {field} = {value!r} must be a non-empty string")
    return value


def _token(table: dict[str, Any], field: str, where: str) -> str:
    value = _text(table, field, where, required=True)
    try:
        return token(value, field)
    except SubjectError as e:
        raise MappingError(f"{where}: field {field} = {value!r}: {e}") from None


def _unknown(table: dict[str, Any], known: set[str], where: str) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise MappingError(f"{where}: unknown field(s) {extra} (known: {sorted(known)})")


def _date(value: object, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise MappingError(f"{where}: field resolution_date = {value!r} must be a date (2025-12-10)")


def parse_pair(table: object, where: str) -> MarketPair:
    """One `[[pair]]` table, validated; MappingError naming `where`, the field and the value."""
    if not isinstance(table, dict):
        raise MappingError(f"{where}: must be a table, got {table!r}")
    key = table.get("opportunity_key")
    if isinstance(key, str) and key:
        where = f"{where} ({key})"
    _unknown(table, _PAIR_KEYS, where)
    opportunity_key = _token(table, "opportunity_key", where)
    orientation = table.get("orientation", "same")
    if orientation not in ORIENTATIONS:
        raise MappingError(f"{where}: field orientation = {orientation!r} must be one of {list(ORIENTATIONS)}")
    confirmed = table.get("confirmed", False)
    if not isinstance(confirmed, bool):
        raise MappingError(f"{where}: field confirmed = {confirmed!r} must be true or false")
    if "resolution_date" in table:
        resolution_date: dt.date | None = _date(table["resolution_date"], where)
    elif confirmed:
        raise MappingError(f"{where}: field resolution_date is missing (required for a confirmed pair)")
    else:
        resolution_date = None  # a proposal may lack one; it must be added before confirming
    score = table.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
        raise MappingError(f"{where}: field score = {score!r} must be a number")
    k = table.get("kalshi")
    if not isinstance(k, dict):
        raise MappingError(f"{where}: field kalshi = {k!r} must be a table with a ticker")
    _unknown(k, _KALSHI_KEYS, f"{where} kalshi")
    ticker = _text(k, "ticker", f"{where} kalshi", required=True)
    try:
        instrument_of(ticker)
    except PayloadError as e:
        raise MappingError(f"{where} kalshi: field ticker = {ticker!r}: {e.problem}") from None
    pm = table.get("polymarket")
    if not isinstance(pm, dict):
        raise MappingError(f"{where}: field polymarket = {pm!r} must be a table with yes_token and no_token")
    _unknown(pm, _POLY_KEYS, f"{where} polymarket")
    yes_token = _token(pm, "yes_token", f"{where} polymarket")
    no_token = _token(pm, "no_token", f"{where} polymarket")
    if yes_token == no_token:
        raise MappingError(f"{where} polymarket: yes_token and no_token are the same ({yes_token!r})")
    return MarketPair(
        opportunity_key=opportunity_key,
        title=_text(table, "title", where, required=False),
        resolution_date=resolution_date,
        orientation=orientation,
        confirmed=confirmed,
        kalshi=KalshiSide(ticker=ticker, rules=_text(k, "rules", f"{where} kalshi", required=False)),
        polymarket=PolymarketSide(
            yes_token=yes_token,
            no_token=no_token,
            condition_id=_text(pm, "condition_id", f"{where} polymarket", required=False),
            question=_text(pm, "question", f"{where} polymarket", required=False),
            rules=_text(pm, "rules", f"{where} polymarket", required=False),
        ),
        score=float(score) if score is not None else None,
        note=_text(table, "note", where, required=False),
    )


def parse_map(data: dict[str, Any], path: str) -> MarketMap:
    """A parsed TOML document as a MarketMap; MappingError for anything wrong, naming the file."""
    extra = sorted(set(data) - {"pair"})
    if extra:
        raise MappingError(f"{path}: unknown top-level key(s) {extra} (pairs go in [[pair]] tables)")
    tables = data.get("pair", [])
    if not isinstance(tables, list):
        raise MappingError(f"{path}: 'pair' must be an array of tables ([[pair]])")
    pairs = [parse_pair(t, f"{path}: pair {i + 1}") for i, t in enumerate(tables)]
    seen: dict[tuple[str, str], int] = {}
    for i, p in enumerate(pairs):
        for what, value in (
            ("opportunity_key", p.opportunity_key),
            ("kalshi.ticker", p.kalshi.ticker),
            ("polymarket token", p.polymarket.yes_token),
            ("polymarket token", p.polymarket.no_token),
        ):
            if (what, value) in seen:
                first = seen[(what, value)] + 1
                raise MappingError(
                    f"{path}: pair {i + 1} ({p.opportunity_key}): {what} {value!r} is already used by pair {first}"
                )
            seen[(what, value)] = i
    return MarketMap(path=path, pairs=pairs)


def load_markets(path: str | Path) -> MarketMap:
    """Read and validate a mapping file."""
    p = Path(path)
    if not p.is_file():
        raise MappingError(f"market mapping file {str(p)!r} does not exist (MT_MARKETS_FILE)")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise MappingError(f"{p}: not valid TOML: {e}") from None
    return parse_map(data, str(p))


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic-string escapes


def dump_pairs(pairs: Iterable[MarketPair], header: str = "") -> str:
    """Pairs as mapping-file TOML (what `markettwin markets propose` prints)."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()] if header else []
    for p in pairs:
        lines += ["", "[[pair]]", f"opportunity_key = {_toml_str(p.opportunity_key)}"]
        if p.title:
            lines.append(f"title = {_toml_str(p.title)}")
        if p.resolution_date is not None:
            lines.append(f"resolution_date = {p.resolution_date.isoformat()}")
        lines += [f"orientation = {_toml_str(p.orientation)}", f"confirmed = {'true' if p.confirmed else 'false'}"]
        if p.score is not None:
            lines.append(f"score = {round(p.score, 1)}")
        if p.note:
            lines.append(f"note = {_toml_str(p.note)}")
        lines += ["[pair.kalshi]", f"ticker = {_toml_str(p.kalshi.ticker)}"]
        if p.kalshi.rules:
            lines.append(f"rules = {_toml_str(p.kalshi.rules)}")
        lines += [
            "[pair.polymarket]",
            f"yes_token = {_toml_str(p.polymarket.yes_token)}",
            f"no_token = {_toml_str(p.polymarket.no_token)}",
        ]
        for field in ("condition_id", "question", "rules"):
            value = getattr(p.polymarket, field)
            if value:
                lines.append(f"{field} = {_toml_str(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"
