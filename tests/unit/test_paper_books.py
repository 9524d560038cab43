"""The paper trader's vectorised book history and market facts."""

from __future__ import annotations

import re

import numpy as np
import pytest

from libs.paper.books import BookHistory, MarketFacts
from proto.events import BookBatch
from tests import factories

T = 1_765_000_000_000_000_000
S = 1_000_000_000


def batch(
    rows: list[tuple[str, int, list[tuple[int, int]], list[tuple[int, int]]]], venue: str = "kalshi", id: str = "b"
) -> BookBatch:
    """rows: (instrument, book_ts, bids, asks); every row padded to the widest ladder."""
    lv = max(max(len(b), len(a)) for _, _, b, a in rows)
    names = sorted({r[0] for r in rows})

    def flat(levels: list[tuple[int, int]], i: int) -> list[int]:
        return [lvl[i] for lvl in levels] + [0] * (lv - len(levels))

    return BookBatch(
        id=id, ts=T, venue=venue, source="test", levels=lv, instruments=names,
        inst_idx=[names.index(r[0]) for r in rows], book_ts=[r[1] for r in rows],
        bid_px=[x for _, _, b, _ in rows for x in flat(b, 0)], bid_sz=[x for _, _, b, _ in rows for x in flat(b, 1)],
        ask_px=[x for _, _, _, a in rows for x in flat(a, 0)], ask_sz=[x for _, _, _, a in rows for x in flat(a, 1)],
    )  # fmt: skip


def bid(h: BookHistory, inst: str, ts: int) -> int | None:
    row = h.at("kalshi", inst, ts)
    return None if row is None else int(row.bid_px[0])


def test_at_is_the_latest_row_at_or_before_the_time() -> None:
    h = BookHistory()
    h.add(batch([("A", T, [(4_000, 5)], [(4_100, 5)]), ("B", T + 1, [(3_000, 5)], [(3_100, 5)])]))
    h.add(batch([("A", T + 10, [(4_010, 5)], [(4_100, 5)]), ("A", T + 20, [(4_020, 5)], [(4_100, 5)])]))
    assert bid(h, "A", T - 1) is None  # nothing held that early
    assert bid(h, "A", T) == 4_000
    assert bid(h, "A", T + 9) == 4_000
    assert bid(h, "A", T + 10) == 4_010
    assert bid(h, "A", T + 10**12) == 4_020
    assert bid(h, "B", T) is None and bid(h, "B", T + 1) == 3_000
    assert h.at("polymarket", "A", T + 10) is None  # other venue
    assert h.newest("kalshi", "A") == T + 20 and h.rows("kalshi", "A") == 3


def test_no_asks_are_the_yes_bids_reflected() -> None:
    h = BookHistory()
    h.add(batch([("A", T, [(4_500, 60), (4_400, 500)], [(4_700, 500)])]))
    row = h.at("kalshi", "A", T)
    assert row is not None
    px, sz = row.ladder("no")
    assert px.tolist() == [5_500, 5_600] and sz.tolist() == [60, 500]
    assert [a.tolist() for a in row.ladder("yes")] == [[4_700, 0], [500, 0]]


def test_late_rows_are_merged_in_time_order_and_a_later_arrival_wins_a_tie() -> None:
    h = BookHistory()
    h.add(batch([("A", T + 10, [(4_010, 5)], [(4_100, 5)]), ("A", T + 30, [(4_030, 5)], [(4_100, 5)])]))
    h.add(batch([("A", T + 20, [(4_020, 5)], [(4_100, 5)]), ("A", T + 10, [(4_011, 5)], [(4_100, 5)])]))
    assert [bid(h, "A", T + d) for d in (10, 15, 20, 25, 30)] == [4_011, 4_011, 4_020, 4_020, 4_030]


def test_memory_is_bounded_by_rows_and_by_the_lookback_window() -> None:
    h = BookHistory(max_rows=4)
    for i in range(50):
        h.add(batch([("A", T + i, [(1_000 + i, 5)], [(9_000, 5)])], id=f"b{i}"))
    assert h.rows("kalshi", "A") == 4
    assert bid(h, "A", T + 45) is None  # dropped
    assert bid(h, "A", T + 46) == 1_046
    assert h._series[("kalshi", "A")].ts.shape[0] <= 2 * 4 + 16  # buffers do not grow past ~2 x max_rows

    w = BookHistory(lookback_ns=10 * S)
    w.hold_ns = None  # trim by the newest row alone
    for i in range(30):  # one row a second
        w.add(batch([("A", T + i * S, [(1_000 + i, 5)], [(9_000, 5)])], id=f"w{i}"))
    # newest at T+29s: rows before T+19s go, except T+19s itself (the book as of the window's start)
    assert w.rows("kalshi", "A") == 11
    assert bid(w, "A", T + 19 * S + 5) == 1_019
    assert bid(w, "A", T + 18 * S) is None


def test_books_the_undecided_intents_need_are_held_while_the_books_run_ahead() -> None:
    """A fast replay: books reach T+29s while the intents still to decide are at T+5s."""
    fresh = BookHistory(lookback_ns=10 * S)  # nothing decided yet: everything is kept (max_rows bounds it)
    held = BookHistory(lookback_ns=10 * S)
    held.hold_ns = T + 5 * S  # the paper service has decided intents up to T+5s
    for i in range(30):
        for h in (fresh, held):
            h.add(batch([("A", T + i * S, [(1_000 + i, 5)], [(9_000, 5)])], id=f"h{i}"))
    assert fresh.rows("kalshi", "A") == 30
    assert bid(held, "A", T + 5 * S + 50) == 1_005  # the book an intent at T+5s fills on is still there
    assert held.rows("kalshi", "A") == 30  # the window starts 10 s before the hold, before the first row
    held.hold_ns = T + 25 * S
    held.add(batch([("A", T + 30 * S, [(1_030, 5)], [(9_000, 5)])], id="h30"))
    assert bid(held, "A", T + 14 * S) is None and bid(held, "A", T + 15 * S) == 1_015


def test_a_wider_batch_widens_an_instrument_and_narrow_rows_are_padded_empty() -> None:
    h = BookHistory()
    h.add(batch([("A", T, [(4_000, 5)], [(4_100, 5)])]))
    h.add(batch([("A", T + 1, [(4_000, 5), (3_900, 7), (3_800, 9)], [(4_100, 5)])]))
    h.add(batch([("A", T + 2, [(4_001, 1)], [(4_101, 1)])]))
    old, wide, narrow = (h.at("kalshi", "A", T + d) for d in (0, 1, 2))
    assert old is not None and wide is not None and narrow is not None
    assert old.bid_px.tolist() == [4_000, 0, 0] and old.bid_sz.tolist() == [5, 0, 0]
    assert wide.bid_sz.tolist() == [5, 7, 9]
    assert narrow.bid_px.tolist() == [4_001, 0, 0] and narrow.ask_sz.tolist() == [1, 0, 0]


def test_lookup_answers_many_queries_into_one_pool() -> None:
    h = BookHistory()
    h.add(batch([("A", T, [(4_000, 5)], [(4_100, 5)]), ("A", T + 10, [(4_010, 5)], [(4_110, 5)])]))
    h.add(batch([("B", T + 5, [(3_000, 5), (2_900, 1)], [(3_100, 5)])]))
    keys = [("kalshi", "A"), ("kalshi", "B"), ("kalshi", "missing")]
    q_keys = np.array([0, 1, 0, 2, -1, 1])
    q_ts = np.array([T + 12, T + 5, T + 3, T + 99, T, T + 4])
    found = h.lookup(keys, q_keys, q_ts)
    assert found.row[3] == -1 and found.row[4] == -1 and found.row[5] == -1  # unknown key, no key, too early
    assert (found.book_ts[:3] == [T + 10, T + 5, T]).all()
    assert found.bid_px.shape[1] == 2  # the widest ladder among the answers
    assert [int(found.bid_px[found.row[q], 0]) for q in range(3)] == [4_010, 3_000, 4_000]
    assert int(found.bid_sz[found.row[0], 1]) == 0  # padded level of A is empty


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bid_sz": [5, -1]}, "bids sz[1]=-1 must not be negative"),
        ({"ask_px": [4_100, 10_000]}, "asks px[1]=10000 must be inside (0, 10000)"),
        ({"bid_px": [4_000, 4_050]}, "bids px[1]=4050 breaks the descending (bids) level order"),
        ({"ask_px": [4_200, 4_100]}, "asks px[1]=4100 breaks the ascending (asks) level order"),
        ({"inst_idx": [3]}, "inst_idx[0]=3 is outside instruments"),
        ({"ask_sz": [1]}, "ask_sz has 1 values, expected rows x levels = 2"),
    ],
)
def test_a_bad_batch_is_refused_whole_naming_the_field(change: dict, message: str) -> None:
    good = batch([("A", T, [(4_000, 5), (3_900, 5)], [(4_100, 5), (4_200, 5)])])
    h = BookHistory()
    with pytest.raises(ValueError, match=re.escape(message)):
        h.add(factories._with(good, change))
    assert h.rows("kalshi", "A") == 0
    # an empty level may carry any price: it is never read
    h.add(factories._with(good, {"bid_px": [4_000, 0], "bid_sz": [5, 0]}))
    assert h.rows("kalshi", "A") == 1


def test_market_facts_keep_the_latest_status_market_id_and_polymarket_fees() -> None:
    f = MarketFacts()
    f.update(factories.market_info("i1", status="active"))
    assert f.closed("kalshi", "KX-A") == "" and f.market_id[("kalshi", "KX-A")] == "KX-A"
    f.update(factories.market_info("i2", status="Finalized"))
    assert f.closed("kalshi", "KX-A") == "finalized"
    assert f.closed("kalshi", "unknown") == ""
    poly = factories.market_info("i3", venue="polymarket", instrument="TOK", market_id="TOK", taker_fee_rate="0.02")
    f.update(poly)
    assert f.fees[("polymarket", "TOK")].rate_num * 50 == f.fees[("polymarket", "TOK")].rate_den  # 0.02 exactly
    f.update(factories._with(poly, {"taker_fee_rate": "", "fees_enabled": None}))
    assert ("polymarket", "TOK") not in f.fees  # back to the venue's default
    with pytest.raises(ValueError, match="taker_fee_rate='x'"):
        f.update(factories._with(poly, {"taker_fee_rate": "x"}))
