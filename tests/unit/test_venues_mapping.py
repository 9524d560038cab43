"""The market mapping file (load, validate, translate for detect) and the fuzzy pair proposer."""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from pathlib import Path

import msgspec
import pytest

from libs.venues.books import ParsedBook, to_batch
from libs.venues.mapping import MappingError, dump_pairs, load_markets, parse_map
from libs.venues.pairing import flatten_markets, kalshi_candidates, normalise, polymarket_candidates, propose
from tests.conftest import needs_data
from tests.fixtures.venues.venue_server import fixture

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "markets.example.toml"

PAIR = """
[[pair]]
opportunity_key = "FED"
title = "Fed holds"
resolution_date = 2025-12-10
orientation = "{orientation}"
confirmed = true
[pair.kalshi]
ticker = "KXFED-25DEC-H0.5"
[pair.polymarket]
yes_token = "111"
no_token = "222"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "markets.toml"
    p.write_text(text)
    return p


def test_example_file_loads() -> None:
    mm = load_markets(EXAMPLE)
    (pair,) = mm.pairs
    assert pair.opportunity_key == "FED-DEC25-NOCHANGE" and pair.kalshi.ticker == "KXFEDDECISION-25DEC-H0"
    assert pair.resolution_date == dt.date(2025, 12, 10) and pair.orientation == "same"
    assert not pair.confirmed and mm.kalshi_tickers() == []  # placeholders: not followed until confirmed


def test_confirmed_pair_lookups_and_translate(tmp_path: Path) -> None:
    mm = load_markets(write(tmp_path, PAIR.format(orientation="inverted")))
    assert mm.kalshi_tickers() == ["KXFED-25DEC-H0.5"] and mm.polymarket_tokens() == ["111", "222"]
    # inverted: Polymarket's NO token quotes Kalshi's YES, and is the one renamed to the pair
    assert mm.aliases() == {("kalshi", "KXFED-25DEC-H0_5"): "FED", ("polymarket", "222"): "FED"}
    k = to_batch(
        ParsedBook(instrument="KXFED-25DEC-H0_5", book_ts=5, bid_px=[4_000], bid_sz=[3], ask_px=[4_100], ask_sz=[2]),
        "kalshi",
        "live",
        2,
    )
    t = mm.translate(k)
    assert t is not None and t.instruments == ["FED"] and t.bid_px == k.bid_px and t.book_ts == [5]
    yes_token = to_batch(
        ParsedBook(instrument="111", book_ts=5, bid_px=[], bid_sz=[], ask_px=[], ask_sz=[]), "polymarket", "live", 1
    )
    assert mm.translate(yes_token) is None


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ('orientation = "inverted"', 'orientation = "upside"', "field orientation = 'upside'"),
        ('ticker = "KXFED-25DEC-H0.5"', 'ticker = ""', "field ticker"),
        ('no_token = "222"', 'no_token = "111"', "the same"),
        ('yes_token = "111"', 'yes_token = "1 1"', "field yes_token"),
        ("resolution_date = 2025-12-10", 'resolution_date = "soon"', "resolution_date = 'soon'"),
        ("confirmed = true", 'confirmed = "yes"', "field confirmed"),
        ('title = "Fed holds"', 'titel = "Fed holds"', "unknown field(s) ['titel']"),
        ('opportunity_key = "FED"', 'opportunity_key = "FED.DEC"', "opportunity_key"),
        ("[pair.kalshi]\n", "[pair.kalshy]\n", "unknown field"),
    ],
)
def test_bad_mapping_names_file_pair_field_and_value(tmp_path: Path, old: str, new: str, words: str) -> None:
    text = PAIR.format(orientation="inverted")
    assert old in text
    path = write(tmp_path, text.replace(old, new))
    with pytest.raises(MappingError) as e:
        load_markets(path)
    assert str(path) in str(e.value) and "pair 1" in str(e.value) and words in str(e.value)


def test_duplicates_across_pairs_and_missing_file(tmp_path: Path) -> None:
    two = PAIR.format(orientation="same") + PAIR.format(orientation="same").replace('"FED"', '"FED2"')
    with pytest.raises(
        MappingError, match=re.escape("pair 2 (FED2): kalshi.ticker 'KXFED-25DEC-H0.5' is already used by pair 1")
    ):
        load_markets(write(tmp_path, two))
    with pytest.raises(MappingError, match="does not exist"):
        load_markets(tmp_path / "nope.toml")
    with pytest.raises(MappingError, match="not valid TOML"):
        load_markets(write(tmp_path, "[[pair]\n"))


def test_dump_round_trips_through_the_loader() -> None:
    mm = load_markets(EXAMPLE)
    again = parse_map(tomllib.loads(dump_pairs(mm.pairs, "header\nline two")), "dumped")
    assert again.pairs == mm.pairs


def kalshi_real() -> list:
    markets = json.loads(needs_data("prediction_markets", "kalshi_2024jul", "market_data.json").read_text())
    events = json.loads(needs_data("prediction_markets", "kalshi_2024jul", "event_data.json").read_text())
    return kalshi_candidates(flatten_markets(markets), events)


def poly_fixture() -> list:
    return [m for f in ("page1", "page2") for m in fixture(f"polymarket_markets_{f}.json")["data"]]


TRUE_PAIRS = {
    "TIKTOKBAN-25DEC31": "Will the US ban TikTok before 2026?",
    "TIKTOKBAN-25APR30": "Will the US ban TikTok before May 2025?",
    "LEAVEPOWELL-25-DEC31": "Will Jerome Powell leave the Fed before 2026?",
    "GTA6-25DEC31": "GTA 6 released before 2026?",
}


def test_proposer_ranks_true_pairs_first_and_rejects_decoys() -> None:
    kc = kalshi_real()
    assert len(kc) > 250  # every market of the real dump, titled from its event
    pc = polymarket_candidates(poly_fixture())
    assert "Will NASA land on the moon before 2026?" not in {p.title for p in pc}  # closed market skipped
    assert "Who will win the 2025 Oscar for Best Picture?" not in {p.title for p in pc}  # not Yes/No
    pairs = propose(kc, pc, min_score=80)
    assert {p.kalshi.ticker: p.polymarket.question for p in pairs} == TRUE_PAIRS
    assert all(not p.confirmed and p.score is not None and p.score >= 80 for p in pairs)
    assert [p.score for p in pairs] == sorted((p.score for p in pairs), reverse=True)
    # the GTA 6 market of another date (Kalshi GTA6-25JUN30, "Before July 2025") is not taken
    gta = next(p for p in pairs if p.kalshi.ticker.startswith("GTA6"))
    assert gta.polymarket.yes_token.startswith("35") and gta.polymarket.no_token.startswith("35")
    # with no threshold the decoys show up, all below every true pair
    everything = propose(kc, pc, min_score=0)
    decoys = [p for p in everything if p.kalshi.ticker not in TRUE_PAIRS]
    assert decoys and max(d.score for d in decoys) < min(p.score for p in pairs)
    # the proposal is a loadable mapping file
    mm = parse_map(tomllib.loads(dump_pairs(pairs)), "candidates.toml")
    assert len(mm.pairs) == 4 and mm.confirmed == []


def test_normalise_drops_filler_and_plurals() -> None:
    assert (
        normalise("Will the US ban TikTok before 2026?")
        == normalise("US bans TikTok before 2026")
        == "us ban tiktok 2026"
    )


def run_cli(argv: list[str]) -> int:
    import argparse

    from libs import config
    from services.cli_markets import add_markets_parser, cmd_markets

    p = argparse.ArgumentParser(prog="markettwin")
    add_markets_parser(p.add_subparsers(dest="cmd", required=True))
    return cmd_markets(config.load({}), p.parse_args(argv))


def test_cli_propose_from_files_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kalshi = needs_data("prediction_markets", "kalshi_2024jul", "market_data.json")
    events = needs_data("prediction_markets", "kalshi_2024jul", "event_data.json")
    poly = tmp_path / "poly.json"
    poly.write_text(json.dumps(poly_fixture()))
    code = run_cli(
        ["markets", "propose", "--polymarket", str(poly), "--kalshi", str(kalshi), "--kalshi-events", str(events)]
    )
    out = capsys.readouterr().out
    assert code == 0
    proposed = parse_map(tomllib.loads(out), "stdout")
    assert {p.kalshi.ticker for p in proposed.pairs} == set(TRUE_PAIRS)
    cand = tmp_path / "candidates.toml"
    cand.write_text(out)
    assert run_cli(["markets", "check", str(cand)]) == 0
    assert "4 pair(s), 0 confirmed" in capsys.readouterr().out
    cand.write_text(out.replace('orientation = "same"', 'orientation = "sideways"', 1))
    assert run_cli(["markets", "check", str(cand)]) == 2  # bad input
    assert "orientation = 'sideways'" in capsys.readouterr().err


def test_proposals_without_dates_or_with_a_one_sided_negation_load_back(tmp_path: Path) -> None:
    kalshi = kalshi_candidates(
        [
            {"ticker": "TIKTOK-NODATE", "title": "Will the US ban TikTok in 2026?"},
            {
                "ticker": "POWELL-STAYS",
                "title": "Will Jerome Powell not leave the Fed in 2026?",
                "close_time": "2026-12-31T00:00:00Z",
            },
        ]
    )
    poly = polymarket_candidates(
        [
            {
                "condition_id": "0xa",
                "question": "Will the US ban TikTok in 2026?",
                "tokens": [{"outcome": "Yes", "token_id": "11"}, {"outcome": "No", "token_id": "12"}],
            },
            {
                "condition_id": "0xb",
                "question": "Will Jerome Powell leave the Fed in 2026?",
                "end_date_iso": "2026-12-31T00:00:00Z",
                "tokens": [{"outcome": "Yes", "token_id": "21"}, {"outcome": "No", "token_id": "22"}],
            },
        ]
    )
    pairs = propose(kalshi, poly, min_score=50)
    by_ticker = {p.kalshi.ticker: p for p in pairs}
    assert set(by_ticker) == {"TIKTOK-NODATE", "POWELL-STAYS"}
    undated, negated_pair = by_ticker["TIKTOK-NODATE"], by_ticker["POWELL-STAYS"]
    assert undated.resolution_date is None and "NO RESOLUTION DATE" in undated.note
    assert undated.orientation == "same"
    # "not leave" on Kalshi vs "leave" on Polymarket: Kalshi YES is Polymarket NO
    assert negated_pair.orientation == "inverted" and "'not'" in negated_pair.note
    assert negated_pair.score is not None and negated_pair.score <= 85.0  # never a high-confidence match
    assert negated_pair.resolution_date == dt.date(2026, 12, 31)
    # the proposer's own output is a valid mapping file
    path = write(tmp_path, dump_pairs(pairs, "proposed"))
    mm = load_markets(path)
    unscored = [msgspec.structs.replace(p, score=None) for p in pairs]
    assert [msgspec.structs.replace(p, score=None) for p in mm.pairs] == unscored and mm.confirmed == []
    assert [p.score for p in mm.pairs] == [round(p.score or 0, 1) for p in pairs]
    # a person confirms the undated pair without adding a date: refused, naming the field
    path.write_text(path.read_text().replace("confirmed = false", "confirmed = true"))
    with pytest.raises(MappingError, match="resolution_date is missing"):
        load_markets(path)
