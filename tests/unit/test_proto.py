"""The wire contract: round trips, typed decoding errors, subjects, exported schema."""

from __future__ import annotations

import msgspec
import pytest

from proto import codec, subjects
from proto.events import (
    EVENT_TYPES,
    BookBatch,
    Intent,
    Leg,
    PaperTrade,
)
from proto.schema_export import SCHEMA_DIR, render
from tests import factories

LEG = factories.LEG


def book() -> BookBatch:
    return BookBatch(
        id="b1",
        ts=1,
        venue="polymarket",
        source="test",
        levels=2,
        instruments=["A", "B"],
        inst_idx=[0, 1],
        book_ts=[10, 11],
        bid_px=[4_900, 4_800, 3_000, 0],
        bid_sz=[100, 50, 7, 0],
        ask_px=[5_100, 5_200, 3_100, 3_200],
        ask_sz=[10, 20, 30, 40],
    )


def test_every_event_round_trips_through_the_any_decoder() -> None:
    events = [
        book(),
        factories.trades("t1"),
        factories.bars("bar1"),
        factories.raw("raw1"),
        factories.market_info("mi1"),
        factories.opportunity("o1", closed_at=factories.T0),
        factories.intent("i1"),
        factories.paper_trade("p1"),
    ]
    assert {type(e) for e in events} == set(EVENT_TYPES)
    for ev in events:
        assert codec.decode_any(codec.encode(ev)) == ev
        assert codec.decode(codec.encode(ev), type(ev)) == ev


def test_tags_are_versioned_and_unique() -> None:
    tags = [t.__struct_config__.tag for t in EVENT_TYPES]
    assert len(set(tags)) == len(tags)
    assert all(tag.endswith(".v1") for tag in tags)


def test_decoding_names_the_bad_field() -> None:
    raw = msgspec.msgpack.encode({"type": "intent.v1", "id": "x", "ts": "soon"})
    with pytest.raises(msgspec.ValidationError, match=r"\$\.ts"):
        codec.decode(raw, Intent)


def test_wrong_event_type_is_rejected_by_a_typed_decoder() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"book\.v1"):
        codec.decode(codec.encode(book()), Intent)


def test_missing_required_field_is_named() -> None:
    raw = msgspec.msgpack.encode({"type": "paper.trade.v1", "id": "t", "ts": 1})
    with pytest.raises(msgspec.ValidationError, match="missing required field"):
        codec.decode(raw, PaperTrade)


def test_bad_outcome_literal_is_rejected() -> None:
    raw = msgspec.msgpack.encode(msgspec.to_builtins(LEG) | {"outcome": "maybe"})
    with pytest.raises(msgspec.ValidationError, match="outcome"):
        codec.decode(raw, Leg)  # type: ignore[arg-type]


def test_subjects_read_general_to_specific_and_reject_bad_tokens() -> None:
    assert subjects.book("kalshi", "FED-DEC25") == "md.book.kalshi.FED-DEC25"
    assert subjects.paper("decision", "R1") == "paper.decision.R1"
    assert subjects.svc("report", "summary") == "svc.report.summary"
    for bad in ["a.b", "", "x*", "y>", "has space"]:
        with pytest.raises(subjects.SubjectError, match="instrument"):
            subjects.book("kalshi", bad)


def test_exported_schema_is_up_to_date() -> None:
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert on_disk == render(), "proto/schema is stale: run `make schema` and commit the result"


def test_run_update_round_trips_with_its_decisions_trades_and_snapshot() -> None:
    from proto.paper import RunUpdate

    ev = factories.run_update("u1", factories.T0)
    back = codec.decode(codec.encode(ev), RunUpdate)
    assert back == ev
    assert back.snapshot.spent_by_day == {20046: 6_690_000}
    assert len(back.decisions) == 2 and back.trades[0].legs == ev.trades[0].legs
