"""Replay of the Fed "no change" CSV (needs ../shared/data; bad-file cases need nothing)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest

from proto import codec
from proto.events import BookBatch
from services.ingest import replay_fed
from services.ingest.replay_fed import FED_INSTRUMENT, REQUIRED_COLUMNS, default_path, load_fed

DATA = default_path()
needs_data = pytest.mark.skipif(
    not DATA.is_file(), reason=f"shared data set absent ({DATA}); it lives in ../shared/data beside the checkout"
)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _px(text: str) -> int:
    return round(float(text) * 10_000)


@needs_data
def test_rows_and_span() -> None:
    replay = load_fed()
    assert replay.rows == 1006
    raw = _csv_rows(DATA)
    assert replay.start_ns == int(raw[0]["timestamp_ms"]) * 1_000_000
    assert replay.end_ns == int(raw[-1]["timestamp_ms"]) * 1_000_000
    assert replay.span_ns == replay.end_ns - replay.start_ns > 0


@needs_data
def test_first_row_matches_csv() -> None:
    raw = _csv_rows(DATA)[0]
    ts, poly, kalshi = next(load_fed().batches(1))
    assert ts == int(raw["timestamp_ms"]) * 1_000_000
    for batch, p in ((poly, "poly"), (kalshi, "kalshi")):
        assert batch.rows == 1 and batch.levels == 1 and batch.source == "replay"
        assert batch.instruments == [FED_INSTRUMENT] and batch.inst_idx == [0]
        assert batch.book_ts == [ts]
        assert batch.bid_px == [_px(raw[f"{p}_best_bid_yes"])]
        assert batch.bid_sz == [math.floor(float(raw[f"{p}_depth_best_yes"]))]
        assert batch.ask_px == [10_000 - _px(raw[f"{p}_best_bid_no"])]
        assert batch.ask_sz == [math.floor(float(raw[f"{p}_depth_best_no"]))]
    assert poly.venue == "polymarket" and kalshi.venue == "kalshi"
    assert poly.id != kalshi.id


@needs_data
def test_every_row_matches_csv_and_round_trips() -> None:
    raw = _csv_rows(DATA)
    [(last_ts, poly, kalshi)] = list(load_fed().batches(10_000))
    assert last_ts == poly.book_ts[-1] == int(raw[-1]["timestamp_ms"]) * 1_000_000
    assert poly.rows == kalshi.rows == 1006
    for i, row in enumerate(raw):
        if row["poly_best_bid_no"]:
            assert poly.ask_px[i] == 10_000 - _px(row["poly_best_bid_no"])
        assert kalshi.bid_px[i] == _px(row["kalshi_best_bid_yes"])
    assert codec.decode(codec.encode(poly), BookBatch) == poly


@needs_data
def test_null_side_is_empty_and_counted_other_venue_kept() -> None:
    raw = _csv_rows(DATA)
    nulls = [i for i, r in enumerate(raw) if r["poly_best_bid_no"] == ""]
    assert len(nulls) == 1
    i = nulls[0]
    replay = load_fed()
    assert replay.empty_rows == {"polymarket": 1, "kalshi": 0}
    [(_, poly, kalshi)] = list(replay.batches(2_000))
    assert (poly.ask_px[i], poly.ask_sz[i]) == (0, 0)
    assert poly.bid_px[i] == _px(raw[i]["poly_best_bid_yes"]) and poly.bid_sz[i] > 0
    assert kalshi.ask_sz[i] > 0 and kalshi.bid_sz[i] > 0


@needs_data
def test_batches_cover_rows_in_order() -> None:
    replay = load_fed()
    chunks = list(replay.batches(300))
    assert [p.rows for _, p, _ in chunks] == [300, 300, 300, 106]
    assert [ts for ts, _, _ in chunks] == [p.book_ts[-1] for _, p, _ in chunks]
    with pytest.raises(ValueError, match="batch_rows=0"):
        next(replay.batches(0))


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_missing_values_empty_one_side(tmp_path: Path) -> None:
    header = list(REQUIRED_COLUMNS)
    good = ["1700000000000", "0.40", "0.55", "10.9", "20", "0.41", "0.57", "5", "6"]
    rows = [
        good,
        ["1700000001000", "NaN", "0.55", "10", "20", "", "0.57", "5", "6"],
        ["1700000002000", "0.40", "", "10", "20", "0.41", "0.57", "0.4", "6"],
    ]
    replay = load_fed(_write(tmp_path / "f.csv", header, rows))
    poly, kalshi = replay.books["polymarket"], replay.books["kalshi"]
    assert poly.bid_px.tolist() == [4_000, 0, 4_000] and poly.bid_sz.tolist() == [10, 0, 10]
    assert poly.ask_px.tolist() == [4_500, 4_500, 0] and poly.ask_sz.tolist() == [20, 20, 0]
    assert kalshi.bid_px.tolist() == [4_100, 0, 0]  # empty price; then depth 0.4 floors to nothing
    assert kalshi.ask_px.tolist() == [4_300, 4_300, 4_300]
    assert replay.empty_rows == {"polymarket": 2, "kalshi": 2}


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("poly_best_bid_no", "abc", "data row 2, column poly_best_bid_no: 'abc' is not a number in (0, 1)"),
        ("kalshi_best_bid_yes", "41", "data row 2, column kalshi_best_bid_yes: '41' is not a number in (0, 1)"),
        ("kalshi_depth_best_no", "-1", "data row 2, column kalshi_depth_best_no: '-1' is not a number in [0,"),
    ],
)
def test_bad_values_are_named_not_dropped(tmp_path: Path, column: str, value: str, message: str) -> None:
    header = list(REQUIRED_COLUMNS)
    good = ["1700000000000", "0.40", "0.55", "10.9", "20", "0.41", "0.57", "5", "6"]
    bad = ["1700000001000", *good[1:]]
    bad[header.index(column)] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        load_fed(_write(tmp_path / "f.csv", header, [good, bad]))


def test_unsorted_rows_are_put_in_time_order(tmp_path: Path) -> None:
    rows = [
        ["2000", "0.40", "0.55", "1", "1", "0.41", "0.57", "1", "1"],
        ["1000", "0.30", "0.55", "1", "1", "0.41", "0.57", "1", "1"],
    ]
    replay = load_fed(_write(tmp_path / "f.csv", list(REQUIRED_COLUMNS), rows))
    assert replay.book_ts.tolist() == [1_000_000_000, 2_000_000_000]
    assert replay.books["polymarket"].bid_px.tolist() == [3_000, 4_000]


def test_missing_file_names_path_and_data_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match=r"nope\.csv.*shared/data"):
        load_fed(missing)


def test_data_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MT_DATA_DIR", str(tmp_path))
    assert replay_fed.default_path() == tmp_path / replay_fed.DATA_SET
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_fed()


def test_missing_columns_are_named(tmp_path: Path) -> None:
    header = [c for c in REQUIRED_COLUMNS if c not in ("kalshi_best_bid_no", "poly_depth_best_yes")]
    path = _write(tmp_path / "f.csv", header, [["1"] * len(header)])
    with pytest.raises(ValueError, match=r"\['poly_depth_best_yes', 'kalshi_best_bid_no'\]"):
        load_fed(path)


def test_bad_timestamp_and_empty_file(tmp_path: Path) -> None:
    rows = [["", "0.40", "0.55", "1", "1", "0.41", "0.57", "1", "1"]]
    with pytest.raises(ValueError, match="timestamp_ms"):
        load_fed(_write(tmp_path / "f.csv", list(REQUIRED_COLUMNS), rows))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_fed(tmp_path / "empty.csv")
