"""Propose cross-venue pairs by fuzzy title match and resolution-date proximity, for a person to confirm.

Titles are normalised (lower case, punctuation and filler words dropped) and scored with rapidfuzz
as the mean of `token_set_ratio` (word overlap, order-free) and `token_sort_ratio` (which, unlike
the set ratio, punishes a short title whose words merely appear inside a long one). The dates cost
points: half a point per day apart (at most 30), 10 when a date is unknown; pairs more than
`max_days` apart are never proposed. Each market is used at most once (best scores first).
Everything proposed is `confirmed = false`: a title match is not a rules match.

Negation: when exactly one of the two titles is negated ("not", "no" — but not "no change", the
usual name of a hold outcome —, "never", "won't", "fails to", "without", ...), the YES of one
market is probably the NO of the other. Such a pair is proposed as `orientation = "inverted"`,
its score lowered by NEGATION_PENALTY (never a high-confidence match), and its note says so.
The resolution date is the Kalshi close (else the Polymarket end date); a pair with neither is
proposed without one (a person must add it before confirming).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from rapidfuzz import fuzz

from libs.venues.kalshi import instrument_of
from libs.venues.mapping import KalshiSide, MarketPair, PolymarketSide

_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "will",
        "be",
        "is",
        "are",
        "was",
        "by",
        "before",
        "after",
        "in",
        "on",
        "of",
        "to",
        "for",
        "at",
        "and",
        "or",
        "than",
        "this",
        "what",
        "which",
        "who",
        "does",
        "do",
        "did",
        "have",
        "has",
        "any",
    ]
)
_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_NEGATION = re.compile(
    r"\b(?:not|no(?!\s+change)|never|none|neither|nor|without|cannot|fails? to|failed to|"
    r"(?:won|isn|aren|wasn|weren|doesn|don|didn|can|couldn|wouldn|shouldn|hasn|haven|hadn)['’]t)\b"
)
NEGATION_PENALTY = 15.0
"""Points taken off a pair whose titles differ by a negation."""


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """One market of one venue, reduced to what matching needs."""

    venue: str
    market_id: str
    """Kalshi ticker, or Polymarket condition id."""
    title: str
    close: dt.date | None = None
    alt_titles: tuple[str, ...] = ()
    """Other names to match on (a Kalshi event title without the market's subtitle); the best counts."""
    yes_token: str = ""
    no_token: str = ""
    rules: str = ""


def _stem(word: str) -> str:
    """A plural or third-person 's' dropped ("bans" → "ban", "leaves" → "leave"), nothing cleverer."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def normalise(title: str) -> str:
    """Lower-case words without punctuation or filler words ("Will the US ban TikTok?" → "us ban tiktok")."""
    return " ".join(_stem(w) for w in _WORD.findall(title.lower()) if w not in _STOP)


def negated(title: str) -> str:
    """The negating word of a title ("won't", "not", ...), or "" when it reads as a plain statement."""
    m = _NEGATION.search(title.lower())
    return m.group(0) if m else ""


def _date(value: object) -> dt.date | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """Keys without the leading underscore some SDK dumps add (`_ticker` → `ticker`)."""
    return {k.lstrip("_"): v for k, v in d.items()}


def flatten_markets(data: object) -> list[dict[str, Any]]:
    """Market dicts from any common shape: a list, {"markets": [...]}, {"data": [...]}, or
    {event_ticker: [markets]} groups (the shared Kalshi dump)."""
    if isinstance(data, dict):
        for key in ("markets", "data"):
            if isinstance(data.get(key), list):
                return flatten_markets(data[key])
        if "ticker" in data or "_ticker" in data or "condition_id" in data:
            return [_plain(data)]
        return [m for v in data.values() if isinstance(v, list) for m in flatten_markets(v)]
    if isinstance(data, list):
        out = []
        for item in data:
            if isinstance(item, dict) and not ({"ticker", "_ticker", "condition_id", "question"} & set(item)):
                out += flatten_markets(item)
            elif isinstance(item, dict):
                out.append(_plain(item))
        return out
    return []


def kalshi_candidates(markets: Iterable[dict[str, Any]], events: Iterable[dict[str, Any]] = ()) -> list[Candidate]:
    """Kalshi markets as candidates; the title is the market's, else its event's title + subtitle."""
    titles = {}
    for e in events:
        e = _plain(e)
        if e.get("event_ticker"):
            titles[e["event_ticker"]] = str(e.get("title") or "")
    out = []
    for m in markets:
        m = _plain(m)
        ticker = m.get("ticker")
        if not ticker:
            continue
        sub = str(m.get("yes_sub_title") or m.get("subtitle") or "").split("::")[0].strip()
        event_title = titles.get(m.get("event_ticker"), "")
        title = str(m.get("title") or "").strip() or f"{event_title} {sub}".strip()
        if not title:
            continue
        alt = tuple(t for t in (event_title,) if t and t != title)
        out.append(
            Candidate(
                venue="kalshi",
                market_id=str(ticker),
                title=title,
                close=_date(m.get("close_time") or m.get("expiration_time")),
                alt_titles=alt,
                rules=str(m.get("rules_primary") or ""),
            )
        )
    return out


def polymarket_candidates(markets: Iterable[dict[str, Any]]) -> list[Candidate]:
    """Polymarket binary (Yes/No) markets still trading, as candidates with both token ids."""
    out = []
    for m in markets:
        if m.get("closed") or m.get("archived"):
            continue
        tokens = {
            str(t.get("outcome", "")).lower(): str(t.get("token_id", ""))
            for t in m.get("tokens") or []
            if isinstance(t, dict)
        }
        if not tokens.get("yes") or not tokens.get("no") or not m.get("question"):
            continue
        out.append(
            Candidate(
                venue="polymarket",
                market_id=str(m.get("condition_id", "")),
                title=str(m["question"]),
                close=_date(m.get("end_date_iso") or m.get("end_date")),
                yes_token=tokens["yes"],
                no_token=tokens["no"],
                rules=str(m.get("description") or ""),
            )
        )
    return out


def score(a: str, b: str, date_a: dt.date | None, date_b: dt.date | None) -> float:
    """0-100: title similarity of normalised titles, less the date penalty."""
    na, nb = normalise(a), normalise(b)
    if not na or not nb:
        return 0.0
    text = (fuzz.token_set_ratio(na, nb) + fuzz.token_sort_ratio(na, nb)) / 2
    if date_a is None or date_b is None:
        return text - 10.0
    return text - min(30.0, abs((date_a - date_b).days) / 2)


def propose(
    kalshi: Sequence[Candidate],
    polymarket: Sequence[Candidate],
    *,
    min_score: float = 80.0,
    max_days: int = 45,
) -> list[MarketPair]:
    """Candidate pairs, best score first, each market used once; all `confirmed = false`."""
    scored = []
    for k in kalshi:
        names = [(t, normalise(t)) for t in (k.title, *k.alt_titles)]
        for p in polymarket:
            if k.close and p.close and abs((k.close - p.close).days) > max_days:
                continue
            np_ = normalise(p.title)
            # the combined score is never above the set ratio: skip the clear misses cheaply
            tries = [t for t, nt in names if fuzz.token_set_ratio(nt, np_) >= min_score]
            if not tries:
                continue
            s = max(score(t, p.title, k.close, p.close) for t in tries)
            if s >= min_score:
                scored.append((s, k, p))
    scored.sort(key=lambda t: (-t[0], t[1].market_id, t[2].market_id))
    used_k: set[str] = set()
    used_p: set[str] = set()
    out = []
    for s, k, p in scored:
        if k.market_id in used_k or p.market_id in used_p:
            continue
        used_k.add(k.market_id)
        used_p.add(p.market_id)
        neg_k, neg_p = negated(k.title), negated(p.title)
        note = "proposed by title/date match: check both venues' rules and the YES/NO orientation, then confirm"
        orientation = "same"
        if bool(neg_k) != bool(neg_p):
            orientation = "inverted"
            s -= NEGATION_PENALTY
            which = f"Kalshi's title says {neg_k!r}" if neg_k else f"Polymarket's title says {neg_p!r}"
            note = (
                f"NEGATED ON ONE SIDE ({which}, the other does not): proposed as inverted (Polymarket YES = "
                "Kalshi NO); read both rules before confirming. " + note
            )
        if k.close is None and p.close is None:
            note = "NO RESOLUTION DATE on either venue: add resolution_date before confirming. " + note
        out.append(
            MarketPair(
                opportunity_key=instrument_of(k.market_id),
                title=k.title,
                resolution_date=k.close or p.close,
                orientation=orientation,  # type: ignore[arg-type]
                confirmed=False,
                kalshi=KalshiSide(ticker=k.market_id, rules=k.rules),
                polymarket=PolymarketSide(
                    yes_token=p.yes_token,
                    no_token=p.no_token,
                    condition_id=p.market_id,
                    question=p.title,
                    rules=p.rules,
                ),
                score=s,
                note=note,
            )
        )
    out.sort(key=lambda pair: -(pair.score or 0.0))
    return out
