"""Paper runs: start validation, durations and the 7-day cap (injected clock), what a run watches,
and the steps of its life (start, fills, settlement exactly once, stop)."""

from __future__ import annotations

import dataclasses
import re

import msgspec
import numpy as np
import pytest

from libs.paper.engine import Engine, RunLimits, RunOutcome
from proto import codec
from proto.events import Leg
from proto.paper import CHECK_BIT, DecisionColumns, RunConfig, RunFilters, RunUpdate, StartRequest, StartRun
from services.paper.runs import MAX_TRADED, TRADED_MAX_AGE_NS, PaperRun, RunError, first_snapshot, new_config
from tests import factories
from tests.unit import test_paper_engine as te

NOW = 1_765_000_000_000_000_000
MIN = 60 * 1_000_000_000
CAP = 7 * 24 * 60.0
ALL = (1 << 12) - 1
"""Every check's bit: 12 checks."""


def start(**request: object) -> StartRun:
    req = {"starting_usd": 1_000.0} | request
    return StartRun(
        user_id="u1",
        request=msgspec.convert(req, StartRequest),
        min_net_edge_micros=5_000,
        max_leg_micros=100_000_000,
        daily_cap_micros=1_000_000_000,
        keys_present=["kalshi", "kalshi"],
    )


def config(req: StartRun, now: int = NOW):
    return new_config(
        req,
        now=now,
        max_duration_min=CAP,
        settlement_delay_ns=2 * 10**9,
        validation="bus",
        venues=["kalshi", "polymarket"],
    )


def test_a_run_without_duration_ends_at_the_7_day_cap_and_one_with_a_duration_then() -> None:
    forever = config(start(), now=NOW)
    assert forever.duration_minutes == 0 and forever.ends_at == NOW + 7 * 24 * 60 * MIN
    assert PaperRun(forever, first_snapshot(forever)).end_reason() == "max_duration"
    zero = config(start(duration_minutes=0), now=NOW + 5)
    assert zero.ends_at == NOW + 5 + 7 * 24 * 60 * MIN
    hour = config(start(duration_minutes=90.5), now=NOW)
    assert hour.ends_at == NOW + 90 * MIN + 30 * 10**9 and hour.duration_minutes == 90.5
    assert PaperRun(hour, first_snapshot(hour)).end_reason() == "duration"
    assert config(start(duration_minutes=CAP)).ends_at == NOW + 7 * 24 * 60 * MIN  # exactly the cap is allowed


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"starting_usd": -5.0}, "starting_usd=-5.0 must be a positive, finite amount of USD"),
        ({"starting_usd": 0.0}, "starting_usd=0.0 must be a positive"),
        ({"starting_usd": float("nan")}, "starting_usd=nan must be a positive"),
        ({"starting_usd": float("inf")}, "starting_usd=inf must be a positive"),
        ({"duration_minutes": -1.0}, "duration_minutes=-1.0 must not be negative"),
        ({"duration_minutes": CAP + 1}, "duration_minutes=10081 exceeds the maximum of 10080 minutes (7 days)"),
        ({"duration_minutes": float("inf")}, "duration_minutes=inf must be a finite number of minutes"),
        ({"label": "x" * 201}, "label has 201 characters, at most 200"),
        ({"notes": "n" * 2001}, "notes has 2001 characters, at most 2000"),
        ({"opportunity_keys": ["a", " "]}, "opportunity_keys[1]=' ' must not be blank"),
        ({"opportunity_keys": ["a b"]}, "opportunity_keys[0]='a b' must be at most 200 characters without whitespace"),
        (
            {"filters": {"venues": ["nyse"]}},
            "filters.venues[0]='nyse' is not a venue paper trades (kalshi, polymarket)",
        ),
        ({"filters": {"min_net_edge_cents": -1.0}}, "filters.min_net_edge_cents=-1.0 must be a finite number"),
    ],
)
def test_bad_start_requests_are_refused_naming_the_field(request_fields: dict, message: str) -> None:
    with pytest.raises(RunError) as err:
        config(start(**request_fields))
    assert err.value.status == 422
    assert message in err.value.detail


def test_bad_profile_thresholds_and_user_ids_are_refused() -> None:
    with pytest.raises(RunError, match=r"max_leg_micros=0 \(from the user's profile\) must be > 0"):
        config(msgspec.structs.replace(start(), max_leg_micros=0))
    with pytest.raises(RunError, match=r"min_net_edge_micros=-1 .* must be >= 0"):
        config(msgspec.structs.replace(start(), min_net_edge_micros=-1))
    with pytest.raises(RunError, match=re.escape("user_id 'a.b' is not a valid NATS subject token")):
        config(msgspec.structs.replace(start(), user_id="a.b"))


def test_keys_merge_without_duplicates_and_a_filter_can_only_raise_the_minimum_edge() -> None:
    cfg = config(start(opportunity_key="k1", opportunity_keys=["k2", "k1", "k3"], label="L", notes="N"))
    assert cfg.opportunity_keys == ["k1", "k2", "k3"] and (cfg.label, cfg.notes) == ("L", "N")
    assert config(start(opportunity_key="  ")).opportunity_keys == []  # a blank single key: none given
    assert cfg.keys_present == ["kalshi"] and cfg.starting_micros == 1_000_000_000
    assert config(start(filters={"min_net_edge_cents": 2.5})).min_net_edge_micros == 25_000
    assert config(start(filters={"min_net_edge_cents": 0.1})).min_net_edge_micros == 5_000  # the profile's 0.5c


def order(id: str, ts: int, key: str = "k1", strategy: str = "xarb", venues=("polymarket", "kalshi"), inst="FED-25"):
    legs = [
        Leg(venue=v, instrument=inst, outcome=o, size=1, limit_px=4_000, cost_micros=0, fee_micros=0)
        for v, o in zip(venues, ("yes", "no"), strict=False)
    ]
    return factories._with(factories.intent(id), {"ts": ts, "opportunity_key": key, "strategy": strategy, "legs": legs})


def test_a_run_watches_its_window_keys_and_filters_and_skips_what_it_decided() -> None:
    cfg = config(
        start(
            duration_minutes=10,
            opportunity_keys=["k1", "k2"],
            filters={"venues": ["polymarket", "kalshi"], "strategies": ["xarb"], "instruments": ["FED-*"]},
        )
    )
    run = PaperRun(cfg, first_snapshot(cfg))
    orders = [
        order("before", NOW - 1),
        order("ok", NOW),
        order("other key", NOW + 1, key="k9"),
        order("other strategy", NOW + 2, strategy="mm"),
        order("other venue", NOW + 3, venues=("nyse", "kalshi")),
        order("other instrument", NOW + 4, inst="BTC"),
        order("k2", NOW + 5, key="k2"),
        order("at the end", cfg.ends_at),
    ]
    seqs = np.arange(1, len(orders) + 1)
    ts = np.array([o.ts for o in orders])
    assert run.watches(orders, seqs, ts, 0).tolist() == [False, True, False, False, False, False, True, False]
    assert run.watches(orders, seqs, ts, 2).tolist()[1] is False  # seq 2 already decided
    stopped = PaperRun(cfg, msgspec.structs.replace(first_snapshot(cfg), state="stopped"))
    assert not stopped.watches(orders, seqs, ts, 0).any()
    everything = config(start())
    assert PaperRun(everything, first_snapshot(everything)).watches(orders, seqs, ts, 0).tolist()[1:7] == [True] * 6


def store(run: PaperRun) -> RunUpdate:
    """Build the next update from the queued steps and mark it stored, as the committer does; returns
    what a reader of the stream decodes from its stored bytes (`PaperRun.encode`)."""
    update, n = run.next_update(NOW)
    run.mark_stored(update, n)
    stored = codec.decode(run.encode(update), RunUpdate)
    assert stored == update  # the bytes say what the update says
    return stored


def test_stored_bytes_follow_every_change_of_pending_and_traded_and_reuse_unchanged_ones() -> None:
    cfg = config(start())
    run = PaperRun(cfg, first_snapshot(cfg))
    run.start_step()
    outcome, _ = fill(cfg, "I1", NOW + 100)
    run.decision_step(outcome, source="intent", last_seq=1)
    first = store(run).snapshot
    assert first.traded == {"O": NOW} and [p.settled_at for p in first.pending] == [NOW + 100]
    pending_bytes = run._encoded["pending"][1]
    run.decision_step(None, source="intent", last_seq=2)  # neither changes: the same bytes serve
    assert store(run).snapshot.traded == {"O": NOW}
    assert run._encoded["pending"][1] is pending_bytes
    assert run.forget_traded(["O"]) is True
    settle = run.settle_step(NOW + 100)
    assert settle is not None
    later = store(run).snapshot
    assert later.traded == {} and later.pending == [] and later.balance_micros == run.snap.balance_micros


def fill(cfg: RunConfig, intent: str, settled_at: int) -> tuple[RunOutcome, int]:
    trade = factories.paper_trade(
        f"{cfg.run_id}:{intent}:T", executed_at=NOW + 10, settled_at=settled_at, cost_micros=6_650_000,
        fee_micros=40_000, payout_micros=7_000_000, pnl_micros=310_000,
    )  # fmt: skip
    decisions = DecisionColumns(
        id=[f"{cfg.run_id}:{intent}"], ts=[NOW], source=["intent"], intent_id=[intent], opportunity_id=["O"],
        opportunity_key=["k"], taken=[True], reason=["taken"], checks_run=[ALL], checks_passed=[ALL],
        detail=["x"], net_edge_per_contract_micros=[1], size=[10], intent_ts=[NOW], book_ts=[NOW],
        trade_id=[trade.id],
    )  # fmt: skip
    spent = 6_690_000
    return RunOutcome(
        decisions=decisions, trades=[trade], balance_micros=10**9 - spent, spent_by_day={20428: spent}, taken=1,
        fees_micros=40_000, traded={"O": NOW},
    ), spent  # fmt: skip


def test_steps_start_fill_settle_once_and_stop() -> None:
    cfg = config(start(duration_minutes=60))
    run = PaperRun(cfg, first_snapshot(cfg))
    run.start_step()
    first = store(run)
    assert first.snapshot.version == 1 and [c.kind for c in first.balance_changes] == ["start"]
    assert first.balance_changes[0].id == f"{cfg.run_id}:start" and first.balance_changes[0].amount_micros == 10**9
    outcome, spent = fill(cfg, "I1", NOW + 100)
    run.decision_step(outcome, source="intent", last_seq=42)
    assert run.snap.balance_micros == 10**9 - spent  # applied at once: the next decision sees it
    assert (run.queued, run.stored) == (2, 1)
    step = store(run)
    s = step.snapshot
    assert (s.version, s.intent_seq, s.opp_seq, s.balance_micros, s.unsettled_micros) == (
        2, 42, 0, 10**9 - spent, 7_000_000
    )  # fmt: skip
    assert (s.decisions, s.taken, s.trades, s.fees_micros, s.pnl_micros) == (1, 1, 1, 40_000, 0)
    assert [(c.kind, c.amount_micros, c.balance_micros) for c in step.balance_changes] == [
        ("fill", -spent, 10**9 - spent)
    ]
    trade_id = outcome.trades[0].id
    assert [p.trade_id for p in s.pending] == [trade_id] and step.trades == outcome.trades
    assert run.settle_step(NOW + 99) is None
    assert run.settle_step(NOW + 100) is not None
    settle = store(run)
    assert [(c.id, c.kind, c.amount_micros, c.pnl_micros) for c in settle.balance_changes] == [
        (f"{trade_id}:settle", "settle", 7_000_000, 310_000)
    ]
    assert settle.snapshot.balance_micros == 10**9 + 310_000 and settle.snapshot.pending == []
    assert run.settle_step(NOW + 10**12) is None  # settled exactly once
    run.stop_step(state="stopped", reason="requested", stopped_at=NOW + 200)
    stop = store(run)
    assert (stop.snapshot.state, stop.snapshot.stop_reason, stop.snapshot.stopped_at, stop.snapshot.version) == (
        "stopped", "requested", NOW + 200, 4
    )  # fmt: skip
    ids = {first.id, step.id, settle.id, stop.id}
    assert len(ids) == 4 and all(i.startswith(f"{cfg.run_id}:v") for i in ids)


def test_steps_queued_meanwhile_are_stored_together_with_the_snapshot_after_the_last() -> None:
    cfg = config(start())
    run = PaperRun(cfg, first_snapshot(cfg))
    run.start_step()
    first, n = run.next_update(NOW)  # in flight ...
    a, _ = fill(cfg, "I1", NOW + 100)
    run.decision_step(a, source="intent", last_seq=7)  # ... while these queue up
    b = RunOutcome(decisions=factories.decisions(cfg.run_id, n=3), trades=[], balance_micros=run.snap.balance_micros,
                   spent_by_day=run.snap.spent_by_day)  # fmt: skip
    run.decision_step(b, source="intent", last_seq=9)
    run.mark_stored(first, n)
    both, n2 = run.next_update(NOW)
    assert n2 == 2 and both.snapshot.version == 2 and both.snapshot.intent_seq == 9
    assert both.decisions.id == [f"{cfg.run_id}:I1", *factories.decisions(cfg.run_id, n=3).id]
    assert both.snapshot.decisions == 4 and [c.kind for c in both.balance_changes] == ["fill"]
    run.mark_stored(both, n2)
    assert run.parts == [] and run.stored == run.queued == 3


def test_lone_intents_decision_rows_and_batch_columns_are_stored_in_step_order() -> None:
    """The hot path's steps carry one decision row each, a batch's step columns: the update holds
    every decision in the order of the steps, each field intact."""
    cfg = config(start())
    run = PaperRun(cfg, first_snapshot(cfg))
    whole = factories.decisions(cfg.run_id, n=6)
    rows = list(zip(*msgspec.structs.astuple(whole), strict=True))
    s = run.snap

    def step(decisions: object, seq: int) -> None:
        outcome = RunOutcome(decisions=decisions, trades=[], balance_micros=s.balance_micros, spent_by_day={})  # type: ignore[arg-type]
        run.decision_step(outcome, source="intent", last_seq=seq)

    step([rows[0]], 0)
    step([rows[1]], 0)
    step(factories.decisions(cfg.run_id, n=2, first=2), 3)  # columns of int-2, int-3
    step([rows[4]], 0)
    step([rows[5]], 0)
    update, n = run.next_update(NOW)
    assert n == 5 and len(update.decisions) == 6
    assert update.decisions.id == whole.id and update.decisions.intent_id == whole.intent_id
    first_two = factories.decisions(cfg.run_id, n=2, first=2)
    assert update.decisions.reason == [*whole.reason[:2], *first_two.reason, *whole.reason[4:]]
    assert update.decisions.detail == [*whole.detail[:2], *first_two.detail, *whole.detail[4:]]
    assert update.decisions.checks_run == [*whole.checks_run[:2], *first_two.checks_run, *whole.checks_run[4:]]
    assert update.snapshot.decisions == 6


def test_a_step_whose_engine_balance_disagrees_with_its_trades_is_refused_and_changes_nothing() -> None:
    cfg = config(start())
    run = PaperRun(cfg, first_snapshot(cfg))
    run.start_step()
    before = (run.snap, run.queued)
    outcome, _ = fill(cfg, "I1", NOW + 100)
    off = dataclasses.replace(outcome, balance_micros=outcome.balance_micros + 1)
    with pytest.raises(AssertionError, match="from the trades"):
        run.decision_step(off, source="intent", last_seq=1)
    skipped = RunOutcome(
        decisions=factories.decisions(cfg.run_id, n=1), trades=[], balance_micros=run.snap.balance_micros - 1,
        spent_by_day={},
    )  # fmt: skip
    with pytest.raises(AssertionError, match="no trade, yet the engine moved the balance"):
        run.decision_step(skipped, source="intent", last_seq=1)
    assert (run.snap, run.queued) == before


def test_update_ids_are_the_same_for_the_same_step_and_differ_for_different_content() -> None:
    cfg = config(start())
    a = PaperRun(cfg, first_snapshot(cfg))
    b = PaperRun(cfg, first_snapshot(cfg))
    a.start_step()
    b.start_step()
    assert a.next_update(NOW)[0].id == b.next_update(NOW + 5)[0].id  # a retry of the same step dedups
    b.stop_step(state="stopped", reason="requested", stopped_at=NOW)
    b.parts = b.parts[1:]
    assert b.next_update(NOW)[0].id != a.next_update(NOW)[0].id


def test_filters_decode_strictly() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `venue`"):
        msgspec.convert({"venue": ["x"]}, RunFilters)


def test_a_venues_filter_does_not_match_an_order_without_legs() -> None:
    filtered = config(start(filters={"venues": ["kalshi"]}))
    everything = config(start())
    orders = [order("no legs", NOW, venues=()), order("kalshi only", NOW + 1, venues=("kalshi",))]
    seqs, ts = np.arange(1, 3), np.array([o.ts for o in orders])
    assert PaperRun(filtered, first_snapshot(filtered)).watches(orders, seqs, ts, 0).tolist() == [False, True]
    assert PaperRun(everything, first_snapshot(everything)).watches(orders, seqs, ts, 0).tolist() == [True, True]


# -- one trade per opportunity opening: the run remembers what it traded -----------------------------


def test_a_step_records_the_traded_opportunities_without_touching_the_old_snapshot() -> None:
    cfg = config(start())
    run = PaperRun(cfg, first_snapshot(cfg))
    run.start_step()
    before = run.snap
    outcome, _ = fill(cfg, "I1", NOW + 100)
    run.decision_step(outcome, source="intent", last_seq=3)
    assert run.snap.traded == {"O": NOW} and before.traded == {}
    assert run.limits().traded == {"O": NOW}  # what the engine checks on the next batch
    kept = run.snap
    b = RunOutcome(decisions=factories.decisions(cfg.run_id, n=1), trades=[], balance_micros=run.snap.balance_micros,
                   spent_by_day=run.snap.spent_by_day, traded={"O2": NOW + 5})  # fmt: skip
    run.decision_step(b, source="intent", last_seq=4)
    assert run.snap.traded == {"O": NOW, "O2": NOW + 5} and kept.traded == {"O": NOW}
    run.decision_step(None, source="intent", last_seq=5)  # nothing traded: the ids stay
    assert store(run).snapshot.traded == {"O": NOW, "O2": NOW + 5}  # stored: a restart resumes with them


def test_forget_traded_removes_closed_opportunities_and_the_next_stored_step_carries_it() -> None:
    cfg = config(start())
    run = PaperRun(cfg, first_snapshot(cfg))
    run.start_step()
    a, _ = fill(cfg, "I1", NOW + 100)
    run.decision_step(dataclasses.replace(a, traded={"O": NOW, "P": NOW + 1}), source="intent", last_seq=1)
    store(run)
    before, queued = run.snap, run.queued
    assert run.forget_traded(["O", "never-traded"]) is True
    assert run.snap.traded == {"P": NOW + 1} and before.traded == {"O": NOW, "P": NOW + 1}
    assert run.queued == queued and run.parts == []  # not a step of its own
    assert run.forget_traded(["O", "Q"]) is False and run.forget_traded([]) is False
    run.decision_step(None, source="opportunity", last_seq=8)
    assert store(run).snapshot.traded == {"P": NOW + 1}


def test_traded_opportunities_are_capped_dropping_the_oldest() -> None:
    cfg = config(start())
    full = {f"o{i}": NOW + 10 * i for i in range(MAX_TRADED)}
    run = PaperRun(cfg, msgspec.structs.replace(first_snapshot(cfg), traded=full))
    outcome, _ = fill(cfg, "I1", NOW + 100)
    newer = {"new-a": NOW + 10 * MAX_TRADED, "new-b": NOW + 15}  # new-b: between o1 and o2
    run.decision_step(dataclasses.replace(outcome, traded=newer), source="intent", last_seq=1)
    assert MAX_TRADED == 10_000
    expected = set(full) - {"o0", "o1"} | {"new-a", "new-b"}  # o0 (NOW) and o1 (NOW + 10) are the oldest
    assert len(run.snap.traded) == MAX_TRADED and set(run.snap.traded) == expected
    assert len(full) == MAX_TRADED and "o0" in full  # the old snapshot's dict untouched


def test_traded_opportunities_older_than_a_day_before_the_newest_trade_are_dropped() -> None:
    """A close the service missed (lost in a restart) must not keep an id for good."""
    cfg = config(start())
    day = TRADED_MAX_AGE_NS
    old = {"recent": NOW - 5, "stale": NOW - day - 1, "edge": NOW - day}  # not in ts order
    run = PaperRun(cfg, msgspec.structs.replace(first_snapshot(cfg), traded=old))
    outcome, _ = fill(cfg, "I1", NOW + 100)
    run.decision_step(dataclasses.replace(outcome, traded={"new": NOW}), source="intent", last_seq=1)
    assert run.snap.traded == {"recent": NOW - 5, "edge": NOW - day, "new": NOW}
    assert day == 86_400 * 10**9 and "stale" in old  # the old snapshot's dict untouched


def test_the_age_limit_holds_across_steps_and_forgets_with_the_remembered_oldest_ts() -> None:
    """A run remembers a lower bound of its traded ids' oldest ts between steps (so a trade does not
    scan them all): ids still age out exactly, after a close forgets the oldest one too."""
    cfg = config(start())
    day = TRADED_MAX_AGE_NS
    run = PaperRun(cfg, first_snapshot(cfg))

    def trade(traded: dict[str, int]) -> dict[str, int]:
        s = run.snap
        b = RunOutcome(decisions=factories.decisions(cfg.run_id, n=1), trades=[], balance_micros=s.balance_micros,
                       spent_by_day=s.spent_by_day, traded=traded)  # fmt: skip
        run.decision_step(b, source="intent", last_seq=1)
        return dict(run.snap.traded)

    assert trade({"a": NOW, "b": NOW + 10}) == {"a": NOW, "b": NOW + 10}
    assert trade({"c": NOW + day}) == {"a": NOW, "b": NOW + 10, "c": NOW + day}  # a is exactly a day old
    assert trade({"d": NOW + day + 1}) == {"b": NOW + 10, "c": NOW + day, "d": NOW + day + 1}
    assert run.forget_traded(["b"]) is True  # the oldest goes: the remembered bound is now too low
    assert trade({"e": NOW + day + 11}) == {"c": NOW + day, "d": NOW + day + 1, "e": NOW + day + 11}
    assert trade({"f": NOW + 2 * day + 1}) == {"d": NOW + day + 1, "e": NOW + day + 11, "f": NOW + 2 * day + 1}


def test_a_run_trades_an_opportunity_once_across_batches_until_it_closes() -> None:
    """Through the engine: the run's snapshot carries the traded id into the next batch's limits."""
    cfg = config(start(starting_usd=10_000.0))
    cfg = msgspec.structs.replace(cfg, max_leg_micros=10**9, daily_cap_micros=10**10, started_at=0)
    run = PaperRun(cfg, first_snapshot(cfg))
    e: Engine = te.engine()

    def step(orders: list) -> list[str]:
        limits: RunLimits = run.limits()
        (out,) = e.decide(e.prepare(orders), [limits], np.ones((len(orders), 1), bool), te.NOW)
        assert out is not None
        run.decision_step(out, source="intent", last_seq=run.snap.intent_seq + len(orders))
        return out.decisions.reason

    assert step([te.intent("A", opportunity_id="OPEN-1")]) == ["taken"]
    assert run.snap.traded == {"OPEN-1": te.T + 2 * te.MS}
    assert step([te.intent("B", opportunity_id="OPEN-1", edge=41_000)]) == ["untraded_opportunity"]
    assert CHECK_BIT["untraded_opportunity"] & ~store(run).decisions.checks_passed[-1]
    assert run.snap.trades == 1
    run.forget_traded(["OPEN-1"])  # the opportunity closed (a later opening has a new id)
    assert step([te.intent("C", opportunity_id="OPEN-1")]) == ["taken"] and run.snap.trades == 2
