"""Calibration from the real AMZN LOBSTER day, checked against plain-Python recomputations from the raw
CSV files (csv module, polars), the hash, and the inputs it must refuse."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest

from libs.data.lobster import EMPTY_ASK, EMPTY_BID, LobsterDay, load_lobster
from libs.sim.calibration import calibrate, calibration_hash, check_calibration
from proto.sim import Calibration
from tests.conftest import needs_data

OPEN, CLOSE, SESSION = 34_200.0, 57_600.0, 23_400.0
NOW = 1_700_000_000_000_000_000


@dataclasses.dataclass
class Raw:
    """The AMZN day as read by the csv module: messages and level-1 book rows as Python lists."""

    msgs: list[tuple[float, int, int, int, int, int]]
    book: list[tuple[int, int, int, int]]


def _csv(folder: Path, kind: str) -> list[list[str]]:
    (path,) = [p for p in folder.iterdir() if f"_{kind}_" in p.name]
    with path.open(newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def amzn_dir() -> Path:
    return needs_data("lobster", "AMZN_2012-06-21_L1_fullday")


@pytest.fixture(scope="module")
def raw(amzn_dir: Path) -> Raw:
    msgs = [(float(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in _csv(amzn_dir, "message")]
    book = [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in _csv(amzn_dir, "orderbook")]
    return Raw(msgs, book)


@pytest.fixture(scope="module")
def day(amzn_dir: Path) -> LobsterDay:
    return load_lobster(amzn_dir)


@pytest.fixture(scope="module")
def cal(day: LobsterDay) -> Calibration:
    return calibrate(day, now_ns=NOW)


def quantiles(values: list[float]) -> list[float]:
    """The 0, 0.1, ..., 1 quantiles by linear interpolation between order statistics."""
    xs = sorted(values)
    out = []
    for k in range(11):
        pos = k / 10 * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        out.append(xs[lo] + (pos - lo) * (xs[hi] - xs[lo]))
    return out


def valid(row: tuple[int, int, int, int]) -> bool:
    ask, ask_sz, bid, bid_sz = row
    return ask != EMPTY_ASK and bid != EMPTY_BID and ask_sz > 0 and bid_sz > 0 and ask > bid


def test_identity_and_rates_match_raw_counts(cal: Calibration, raw: Raw) -> None:
    assert (cal.symbol, cal.cal_date, cal.market, cal.tick) == ("AMZN", "2012-06-21", "XNYS", 100)
    assert cal.source == "AMZN_2012-06-21_34200000_57600000_message_1.csv" and cal.created_at == NOW
    inside = [m for m in raw.msgs if OPEN <= m[0] < CLOSE]
    assert len(raw.msgs) == 57_515 and len(inside) == len(raw.msgs)  # the file is all session
    count = {k: sum(1 for m in inside if m[1] == k) for k in (1, 2, 3, 4, 5)}
    s = cal.stats
    assert s.limit_rate_per_s == pytest.approx(count[1] / SESSION, rel=1e-12)
    assert s.cancel_rate_per_s == pytest.approx((count[2] + count[3]) / SESSION, rel=1e-12)
    assert s.trade_rate_per_s == pytest.approx((count[4] + count[5]) / SESSION, rel=1e-12)
    exec_sizes = [m[3] for m in inside if m[1] in (4, 5)]
    assert s.daily_volume == sum(exec_sizes)
    assert s.trade_size_mean == pytest.approx(sum(exec_sizes) / len(exec_sizes), rel=1e-12)
    q = quantiles(exec_sizes)
    assert cal.trade_size_q == pytest.approx(q) and s.trade_size_p50 == q[5]
    assert cal.order_size_q == pytest.approx(quantiles([m[3] for m in inside if m[1] == 1]))


def test_spread_and_depth_are_time_weighted_over_the_session(cal: Calibration, raw: Raw) -> None:
    spread_w = depth_w = weight = 0.0
    for k, row in enumerate(raw.book):
        start = max(raw.msgs[k][0], OPEN)
        end = min(raw.msgs[k + 1][0] if k + 1 < len(raw.msgs) else CLOSE, CLOSE)
        if end > start and valid(row):
            spread_w += (end - start) * (row[0] - row[2])
            depth_w += (end - start) * (row[1] + row[3]) / 2
            weight += end - start
    spread_ticks = spread_w / weight / 100
    assert cal.stats.spread_ticks_mean == pytest.approx(spread_ticks, rel=1e-9)
    assert cal.stats.depth_touch_mean == pytest.approx(depth_w / weight, rel=1e-9)
    # AMZN at ~$220 in 2012 traded with a wide touch: about 13 cents on average, never below a tick
    assert 5 < spread_ticks < 30
    assert min(r[0] - r[2] for r in raw.book if valid(r)) >= 100


def test_open_mid_limit_offsets_and_cancel_lifetime(cal: Calibration, raw: Raw) -> None:
    first = next(r for r in raw.book if valid(r))
    assert cal.open_mid == (first[0] + first[2]) // 2
    offsets = []
    for k in range(1, len(raw.msgs)):
        _, typ, _, _, price, direction = raw.msgs[k]
        ask, ask_sz, bid, bid_sz = raw.book[k - 1]
        if typ != 1:
            continue
        if direction == 1 and bid_sz > 0:
            offsets.append((bid - price) / 100)
        elif direction == -1 and ask_sz > 0:
            offsets.append((price - ask) / 100)
    assert cal.limit_offset_ticks == pytest.approx(quantiles(offsets))
    added: dict[int, float] = {}
    lifetimes = []
    for t, typ, oid, *_ in raw.msgs:
        if typ == 1:
            added.setdefault(oid, t)
        elif typ == 3 and oid in added:
            lifetimes.append(t - added[oid])
    assert cal.cancel_lifetime_s == pytest.approx(sum(lifetimes) / len(lifetimes), rel=1e-9)


def test_volume_and_activity_profiles_per_minute(cal: Calibration, raw: Raw) -> None:
    volume = [0.0] * 390
    messages = [0] * 390
    for t, typ, _, size, _, _ in raw.msgs:
        minute = int((t - OPEN) // 60)
        messages[minute] += 1
        if typ in (4, 5):
            volume[minute] += size
    total = sum(volume)
    assert len(cal.volume_profile) == len(cal.activity_profile) == 390
    assert math.fsum(cal.volume_profile) == pytest.approx(1.0, abs=1e-12)
    assert cal.volume_profile == pytest.approx([v / total for v in volume], rel=1e-12)
    mean = sum(messages) / 390
    assert cal.activity_profile == pytest.approx([m / mean for m in messages], rel=1e-12)
    assert sum(cal.activity_profile) / 390 == pytest.approx(1.0)


def test_stylised_facts_of_the_real_day(cal: Calibration, raw: Raw) -> None:
    # the mid in force at each minute's end (last valid book row at or before it), by a pointer walk
    mids, k, mid = [], 0, None
    for i in range(390):
        end = OPEN + 60 * (i + 1)
        while k < len(raw.msgs) and raw.msgs[k][0] <= end:
            if valid(raw.book[k]):
                mid = (raw.book[k][0] + raw.book[k][2]) / 2
            k += 1
        mids.append(mid)
    volume = [0.0] * 390
    for t, typ, _, size, _, _ in raw.msgs:
        if typ in (4, 5):
            volume[int((t - OPEN) // 60)] += size
    r = pl.Series([math.log(mids[i + 1] / mids[i]) for i in range(389)])
    s = cal.stats
    assert s.kurtosis_excess == pytest.approx(r.kurtosis(fisher=True, bias=True), rel=1e-9)
    assert s.minute_vol_bps == pytest.approx(r.std(ddof=1) * 1e4, rel=1e-9)
    frame = pl.DataFrame({"abs_r": r.abs(), "volume": volume[1:]})
    assert s.corr_volume_abs_return == pytest.approx(frame.select(pl.corr("abs_r", "volume")).item(), rel=1e-9)
    x, m = r.to_list(), r.mean()
    var = sum((v - m) ** 2 for v in x) / 389
    assert s.acf1_returns == pytest.approx(sum((x[i] - m) * (x[i + 1] - m) for i in range(388)) / 388 / var, rel=1e-9)
    # fat tails and clustering show even in one day of minutes
    assert s.kurtosis_excess > 1 and s.acf1_abs_returns > 0


def test_hash_is_stable_and_tracks_every_parameter(day: LobsterDay, cal: Calibration) -> None:
    again = calibrate(day, now_ns=NOW + 123)
    assert re.fullmatch(r"[0-9a-f]{8}", cal.cal_hash)
    assert again.cal_hash == cal.cal_hash == calibration_hash(cal) and again.created_at != cal.created_at
    assert msgspec.structs.replace(again, created_at=NOW) == cal
    changed = [
        msgspec.structs.replace(cal, tick=50),
        msgspec.structs.replace(cal, open_mid=cal.open_mid + 1),
        msgspec.structs.replace(cal, cancel_lifetime_s=cal.cancel_lifetime_s * 1.0001),
        msgspec.structs.replace(cal, stats=msgspec.structs.replace(cal.stats, acf1_returns=0.0)),
        msgspec.structs.replace(cal, volume_profile=[*cal.volume_profile[:-1], 0.5]),
        msgspec.structs.replace(cal, symbol="AAPL"),
    ]
    hashes = {calibration_hash(c) for c in changed}
    assert len(hashes) == len(changed) and cal.cal_hash not in hashes
    assert calibrate(day, tick=1, now_ns=NOW).cal_hash != cal.cal_hash


def _rows(day: LobsterDay, keep: np.ndarray) -> LobsterDay:
    """The day with only the rows where `keep` is true."""
    cols = ("time", "type", "order_id", "size", "price", "direction", "book")
    return dataclasses.replace(day, **{c: getattr(day, c)[keep] for c in cols})


def test_bad_inputs_are_refused(day: LobsterDay) -> None:
    cases = [
        (_rows(day, np.zeros(len(day), bool)), {}, "the day has no messages"),
        (dataclasses.replace(day, book=np.tile([EMPTY_ASK, 0, EMPTY_BID, 0], (len(day), 1))), {}, "no valid two-sided"),
        (dataclasses.replace(day, book=day.book[:, [2, 3, 0, 1]]), {}, "no valid two-sided"),  # crossed
        (_rows(day, ~np.isin(day.type, (4, 5))), {}, r"no execution \(type 4 or 5\)"),
        (_rows(day, day.type != 1), {}, r"no limit order \(type 1\)"),
        (day, {"market": "XHKG"}, "market XHKG does not fit symbol 'AMZN', which trades on XNYS"),
        (day, {"market": "XLON"}, "unknown market 'XLON'"),
        (day, {"tick": 0}, "tick must be a positive integer"),
        (dataclasses.replace(day, date="2012-06-23"), {}, "2012-06-23 is a Saturday"),
        (dataclasses.replace(day, date="2012-06-22"), {}, "file name says AMZN on 2012-06-21"),
        (dataclasses.replace(day, date="21/06/2012"), {}, "YYYY-MM-DD"),
        (dataclasses.replace(day, time=day.time - 34_200.0), {}, "no message inside the XNYS session"),
    ]
    for bad, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            calibrate(bad, **kwargs)


def test_the_aapl_sample_calibrates_from_level_1_of_ten() -> None:
    folder = needs_data("lobster", "AAPL_2012-06-21_L10_first998")
    cal = calibrate(load_lobster(folder), now_ns=NOW)
    msgs = [(float(r[0]), int(r[1]), int(r[3])) for r in _csv(folder, "message")]
    assert max(t for t, _, _ in msgs) < OPEN + 60  # 49 seconds: every execution is in minute 0
    assert cal.volume_profile[0] == 1.0 and sum(cal.volume_profile[1:]) == 0
    assert cal.stats.daily_volume == sum(size for _, typ, size in msgs if typ in (4, 5))
    assert cal.activity_profile[0] == pytest.approx(390.0)


def test_check_calibration_accepts_a_real_one_and_names_every_bad_field(cal: Calibration) -> None:
    check_calibration(cal)
    bad = msgspec.structs.replace(
        cal,
        tick=0,
        open_mid=-5,
        cancel_lifetime_s=float("nan"),
        stats=msgspec.structs.replace(cal.stats, trade_rate_per_s=0.0),
        trade_size_q=list(reversed(cal.trade_size_q)),
        volume_profile=[0.0] * len(cal.volume_profile),
    )
    with pytest.raises(ValueError) as info:
        check_calibration(bad)
    message = str(info.value)
    for fragment in (
        "tick must be positive",
        "open_mid must be a positive price",
        "stats.trade_rate_per_s must be a positive number",
        "cancel_lifetime_s must be a positive number",
        "trade_size_q must be 11 finite, non-decreasing quantiles",
        "volume_profile must be finite, non-negative and not all zero",
    ):
        assert fragment in message
