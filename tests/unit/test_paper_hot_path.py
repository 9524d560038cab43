"""The pieces of paper's hot path that need no bus: the consumer's pending count, the small-batch
paths (run matching, book lookups) agreeing with the batched ones, the committer's staggered send
times, and the hot path's on/off rule."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

import numpy as np
import structlog

from libs.paper.books import SMALL_LOOKUP, BookHistory
from proto import codec
from proto.events import BookBatch, Intent
from proto.paper import RunConfig, RunFilters, RunUpdate
from services.paper.commit import UPDATE_EVERY_S, Committer
from services.paper.consumer import OrderedConsumer, ack_info, ack_seq
from services.paper.runs import SMALL_BATCH, PaperRun, concat_decisions, first_snapshot
from services.paper.service import PaperService
from tests import factories
from tests.unit import test_paper_engine as te

NOW = 1_765_000_000_000_000_000


def test_the_ack_subject_gives_sequence_deliveries_and_pending_in_both_layouts() -> None:
    old = "$JS.ACK.INTENT.paper-intents.2.417.9.1765000000000000000.3"
    new = "$JS.ACK.hub.ACC.INTENT.paper-intents.1.418.10.1765000000000000000.0.tok"
    assert ack_info(old) == (417, 2, 3) and ack_seq(old) == 417
    assert ack_info(new) == (418, 1, 0) and ack_seq(new) == 418


def _intent(id: str, instrument: str = "FED", ts: int = NOW) -> Any:
    return factories.hedged_intent(
        id, instrument, yes_limit=4_100, no_limit=5_600, size=10, edge_per_contract=1_000, book_ts=NOW, ts=ts
    )


def _run(filters: RunFilters, keys: list[str], started: int, ends: int) -> PaperRun:
    cfg = RunConfig(
        run_id="r", user_id="u", starting_micros=1, min_net_edge_micros=0, max_leg_micros=1, daily_cap_micros=1,
        settlement_delay_ns=0, started_at=started, ends_at=ends, opportunity_keys=keys, filters=filters,
    )  # fmt: skip
    return PaperRun(cfg, first_snapshot(cfg))


def test_small_batches_are_matched_as_the_batched_path_matches_them() -> None:
    rng = random.Random(7)
    runs = [
        _run(RunFilters(), [], NOW, NOW + 100),
        _run(RunFilters(venues=["kalshi", "polymarket"], instruments=["FED*"]), ["k1", "k2"], NOW + 10, NOW + 60),
        _run(RunFilters(strategies=["xarb"], instruments=["CPI"]), [], NOW, NOW + 100),
    ]
    orders = []
    for i in range(200):
        it = _intent(f"i{i}", rng.choice(["FED", "FEDX", "CPI"]), ts=NOW + rng.randrange(-20, 120))
        orders.append(factories._with(it, {"opportunity_key": rng.choice(["k1", "k2", "k3"])}))
    seqs = np.arange(1, len(orders) + 1, dtype=np.int64)
    ts = np.array([o.ts for o in orders], np.int64)
    skip = {o.id: o.ts for o in orders[::7]}
    for run in runs:
        for last, skip_of in ((0, None), (50, skip)):
            whole = run.watches(orders, seqs, ts, last, skip_of)  # the numpy path (200 orders)
            assert len(orders) > SMALL_BATCH
            for lo in range(0, len(orders), 3):  # the one-by-one path, three orders at a time
                part = run.watches(orders[lo : lo + 3], seqs[lo : lo + 3], ts[lo : lo + 3], last, skip_of)
                assert part.tolist() == whole[lo : lo + 3].tolist()
            hot = run.watches(orders[:3], None, ts[:3], last, skip_of)  # no sequences: the hot path's
            assert hot.tolist() == run.watches(orders[:3], np.full(3, 10**9), ts[:3], last, skip_of).tolist()
        assert whole.any() and not whole.all()  # the mix exercises both outcomes


def _book(venue: str, inst: str, ts: int, px: int, levels: int) -> BookBatch:
    return BookBatch(
        id=f"{venue}{inst}{ts}", ts=ts, venue=venue, source="t", levels=levels, instruments=[inst], inst_idx=[0],
        book_ts=[ts], bid_px=[px - 10 * k for k in range(levels)], bid_sz=[100 + k for k in range(levels)],
        ask_px=[px + 10 + 10 * k for k in range(levels)], ask_sz=[200 + k for k in range(levels)],
    )  # fmt: skip


def test_a_few_book_lookups_answer_as_the_grouped_lookup_does() -> None:
    h = BookHistory()
    keys = [("kalshi", "A"), ("polymarket", "A"), ("kalshi", "B"), ("polymarket", "missing")]
    for step in range(20):
        h.add(_book("kalshi", "A", NOW + 100 * step, 4_000 + step, 3))
        h.add(_book("polymarket", "A", NOW + 100 * step + 50, 5_000 + step, 5))
    h.add(_book("kalshi", "B", NOW + 500, 3_000, 2))
    rng = random.Random(3)
    many_k = np.array([rng.randrange(-1, len(keys)) for _ in range(40)], np.int64)
    many_t = np.array([NOW + rng.randrange(-200, 2_500) for _ in range(40)], np.int64)
    grouped = h.lookup(keys, many_k, many_t)
    assert len(many_t) > SMALL_LOOKUP
    for lo in range(0, 40, 3):
        few = h.lookup(keys, many_k[lo : lo + 3], many_t[lo : lo + 3])
        for q in range(len(few.row)):
            want_row = grouped.row[lo + q]
            assert (few.row[q] >= 0) == (want_row >= 0)
            assert few.book_ts[q] == grouped.book_ts[lo + q]
            if want_row >= 0:
                for a, b in zip(
                    (few.bid_px, few.bid_sz, few.ask_px, few.ask_sz),
                    (grouped.bid_px, grouped.bid_sz, grouped.ask_px, grouped.ask_sz),
                    strict=True,
                ):
                    width = min(a.shape[1], b.shape[1])
                    assert a[few.row[q], :width].tolist() == b[want_row, :width].tolist()
                    assert not a[few.row[q], width:].any() and not b[want_row, width:].any()
    assert (grouped.row >= 0).any() and (grouped.row < 0).any()


def test_runs_store_on_their_own_phase_never_more_often_than_the_period() -> None:
    """Five runs that just stored together each get a slot of their own in the next period; a run
    quiet for a whole period stores at once."""
    committer = Committer(bus=None, log=None, on_stored=lambda *a: None)  # type: ignore[arg-type]
    ids = [f"run{i}" for i in range(5)]
    assert all(committer._next_send(r) == 0.0 for r in ids)  # a run that never sent goes at once
    now = time.monotonic()
    for r in ids:
        committer._sent_at[r] = now  # all five just sent together
    nxt = [committer._next_send(r) for r in ids]
    assert all(now + UPDATE_EVERY_S <= t < now + 2 * UPDATE_EVERY_S for t in nxt)
    phases = sorted(round((t % UPDATE_EVERY_S) / UPDATE_EVERY_S, 6) % 1.0 for t in nxt)
    gaps = [b - a for a, b in itertools.pairwise(phases)] + [1 - phases[-1] + phases[0]]
    assert min(gaps) > 0.05  # spread over the period, not back to back
    committer._sent_at["quiet"] = now - UPDATE_EVERY_S
    assert committer._next_send("quiet") == 0.0


async def test_a_send_lets_the_hot_path_read_its_socket_before_encoding_and_before_publishing() -> None:
    """The committer calls `before_step` (the hot path's `CoreFeed.poll`) ahead of each costly step,
    so an intent arriving meanwhile is decided then; what it publishes is the update's bytes."""
    steps: list[str] = []

    class _Bus:
        async def publish_encoded(self, subject: str, data: bytes, msg_id: str | None) -> int:
            steps.append(f"publish {subject} {codec.decode(data, RunUpdate).id == msg_id}")
            return 1

    committer = Committer(_Bus(), structlog.get_logger(), lambda *a: None, before_step=lambda: steps.append("poll"))  # type: ignore[arg-type]
    cfg = RunConfig(run_id="r1", user_id="u", starting_micros=10**9, min_net_edge_micros=0, max_leg_micros=10**9,
                    daily_cap_micros=10**12, settlement_delay_ns=0, started_at=0, ends_at=10**18)  # fmt: skip
    run = PaperRun(cfg, first_snapshot(cfg))
    run.start_step()
    committer.kick(run)
    await committer.wait_stored(run)
    assert steps[:3] == ["poll", "poll", "publish paper.update.r1 True"]


def _service(in_sync: bool) -> Any:
    svc: Any = PaperService.__new__(PaperService)
    svc.consumers = [SimpleNamespace(in_sync=in_sync)]
    svc.runs = {}
    svc._hot_on, svc._hot_first, svc._hot_armed, svc._hot_ids = False, None, False, {}
    svc._hot_passed = set()
    return svc


def test_the_hot_path_switches_on_in_sync_and_off_on_a_missed_intent_after_its_first() -> None:
    """On: the consumer is in sync and every core copy passed while off has come through JetStream.
    Off: JetStream delivers, after the hot path's first intent, one the hot path never saw."""
    svc = _service(in_sync=False)
    assert not svc._hot_ready()  # a backlog: JetStream's order
    svc.consumers[0].in_sync = True
    svc._hot_passed = {"x"}  # a core copy passed while off: JetStream has not delivered it yet
    assert not svc._hot_ready()
    svc._hot_passed.clear()
    assert svc._hot_ready()
    svc._hot_first = "b"  # the first intent the hot path decided since it switched on
    svc._hot_ids = {"b": None, "c": None}
    svc._check_hot_missed([_intent("a")])  # passed while off, before "b": expected from JetStream
    assert svc._hot_on and not svc._hot_armed
    svc._check_hot_missed([_intent("b"), _intent("c")])
    assert svc._hot_on and svc._hot_armed
    svc._check_hot_missed([_intent("d")])  # after "b" and never seen by the hot path: a missed core copy
    assert not svc._hot_on
    svc.consumers[0].in_sync = False
    assert not svc._hot_ready()


class _Committer:
    """Stores nothing: the service's deciding path without a bus."""

    def kick(self, run: PaperRun) -> None:
        pass

    def wait_stored(self, run: PaperRun) -> Any:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def _deciding_service() -> tuple[Any, PaperRun]:
    """A PaperService with the real engine and one $10,000 run, no bus (the hot path on)."""
    svc = _service(in_sync=True)
    svc.engine = te.engine()
    svc.books = svc.engine.books
    svc.live, svc.lock, svc.committer, svc.log = None, asyncio.Lock(), _Committer(), structlog.get_logger()
    svc._seen, svc._hot_ids = OrderedDict(), OrderedDict()
    svc._hot_queue, svc._hot_busy, svc._hot_sub = asyncio.Queue(), False, None
    svc._intent_decoder = codec.decoder(Intent)
    svc.decided = svc.hot_decided = 0
    svc._closing, svc._intents_decided_ts = [], 0
    cfg = RunConfig(
        run_id="R", user_id="u1", starting_micros=10_000_000_000, min_net_edge_micros=5_000,
        max_leg_micros=1_000_000_000, daily_cap_micros=10_000_000_000, settlement_delay_ns=2 * te.S, started_at=0,
        ends_at=2**62,
    )  # fmt: skip
    run = PaperRun(cfg, first_snapshot(cfg))
    svc.runs = {"R": run}
    svc._hot_on = True
    return svc, run


async def test_a_closed_opening_is_remembered_until_jetstream_has_delivered_its_missed_intents() -> None:
    """I1 of opening O is taken on the hot path; I2 (a better intent of O) is missed by it; J of
    another opening, made after O closed, is taken on the hot path; then O's close comes. O must
    still count as traded when JetStream delivers I2: the hot path's decisions say nothing about the
    intents it missed, only JetStream's stream order does."""
    svc, run = _deciding_service()
    i1 = te.intent("I1", opportunity_id="O", ts=te.T + 2 * te.MS)
    i2 = te.intent("I2", opportunity_id="O", ts=te.T + 3 * te.MS, edge=41_000)
    j = te.intent("J", opportunity_id="P", ts=te.T + 10 * te.MS)
    for hot in ([i1], [j]):
        async with svc.lock:
            await svc._decide(svc._hot_fresh(hot), None, "intent")
    close = factories._with(
        factories.opportunity("c-O"), {"opportunity_id": "O", "status": "closed", "ts": te.T + 5 * te.MS}
    )
    await svc.on_opportunities([(close, 1)])
    assert set(run.snap.traded) == {"O", "P"}  # no intent of JetStream's has passed the close yet
    await svc.on_intents([(i1, 1), (i2, 2), (j, 3)])  # JetStream's copies, in stream order
    cols = concat_decisions([p.decisions for p in run.parts if p.decisions])
    reasons = dict(zip(cols.intent_id, cols.reason, strict=True))
    assert reasons == {"I1": "taken", "J": "taken", "I2": "untraded_opportunity"}
    assert run.snap.trades == 2 and set(run.snap.traded) == {"P"}  # O forgotten once I2 (before its close) is decided


async def test_an_intent_decided_in_the_read_callback_arms_the_missed_copy_check() -> None:
    """The first intent the hot path decides after it switches on arms the check for missed core
    copies, also when it is decided in the feed's read callback (`_hot_now`): JetStream then
    delivering one the hot path never saw switches the hot path off (JetStream's order rules)."""
    svc, run = _deciding_service()
    svc._hot_on = False  # switches on at the first core copy: in sync, nothing passed
    a = te.intent("A", opportunity_id="O", ts=te.T + 2 * te.MS)
    z = te.intent("Z", opportunity_id="P", ts=te.T + 3 * te.MS)
    assert svc._hot_now(codec.encode(a)) is True
    assert svc.hot_decided == 1 and svc._hot_on and run.snap.ahead == {"A": a.ts}
    await svc.on_intents([(a, 1), (z, 2)])  # Z's core copy never came
    assert not svc._hot_on
    assert run.snap.decisions == 2 and run.snap.intent_seq == 2 and not run.snap.ahead  # each once


async def test_a_pull_that_expires_behind_a_backlog_does_not_count_as_in_sync() -> None:
    """The server lets a pull request expire (408) when `max_ack_pending` holds deliveries back, with
    messages still waiting: only an expiry after a delivery with nothing behind it means in sync."""
    seen: list[int] = []

    async def handler(pairs: list[tuple[Any, int]]) -> None:
        seen.extend(seq for _, seq in pairs)

    c = OrderedConsumer(
        None, stream="INTENT", durable="t", filter_subject="intent.>", kind=Intent, handler=handler,  # type: ignore[arg-type]
        log=structlog.get_logger(),
    )  # fmt: skip
    data = codec.encode(_intent("i1"))
    delivery = SimpleNamespace(headers=None, data=data, reply="$JS.ACK.INTENT.t.1.7.7.1765000000000000000.5")
    expired = SimpleNamespace(headers={"Status": "408", "Description": "Request Timeout"}, data=b"", reply="")
    c.in_sync = True
    await c._handle([delivery])  # 5 more waiting behind it
    assert seen == [7] and not c.in_sync
    await c._handle([expired])
    assert not c.in_sync  # the expiry says nothing about the 5
    last = SimpleNamespace(headers=None, data=data, reply="$JS.ACK.INTENT.t.1.12.8.1765000000000000000.0")
    await c._handle([last])
    assert c.in_sync  # delivered with nothing behind it
    c.in_sync = False
    await c._handle([expired])
    assert c.in_sync  # and an expiry after that agrees
