"""paper: the dry-run execution simulator. Users' runs decide every intent and success-span start
they watch, fill virtually against the books, and settle; nothing is ever sent to a venue.

Wiring (the rules live in `libs.paper.engine` and `services.paper.runs`):

- Books and market facts: `intake.BookIntake`, an ephemeral consumer on MD from now −
  MT_PAPER_BOOK_LOOKBACK_S into `libs.paper.books` (venues without a fee model are skipped). The
  service starts deciding only once the intake has caught up with the stream, and catches up again
  when an intent names a book newer than any it holds.
- Intents: durable consumer `paper-intents` on INTENT; success spans: `paper-opps` on OPP (only
  `opened` steps make decisions), both `consumer.OrderedConsumer` (strict order, one ack per
  batch). A run skips an order whose stream sequence is not past its `snapshot.intent_seq` /
  `opp_seq`, and the service skips an order id it saw under another sequence (published twice).
- The hot path (MT_PAPER_HOT_PATH, on by default): a core-NATS subscription to the same intent
  subjects, on a connection of its own read straight off its socket (`core_feed.CoreFeed`; the
  nats-py subscription when the server wants TLS), gets each intent as it is published, a
  millisecond or more before JetStream delivers it, and decides it at once (in the socket's read
  callback when nothing else is in hand, else what queued meanwhile: one by one through
  `Engine.decide_one` when fewer than HOT_BATCH_MIN, else as one batch), while `paper-intents`
  is in sync (nothing older waiting in the
  stream: `OrderedConsumer.in_sync`). The run remembers such an intent in `snapshot.ahead` (id →
  ts) until the consumer reaches its JetStream copy, which it then skips, moving `intent_seq` past
  it. The hot path stays on until JetStream delivers an intent it had not seen (a core copy
  missed, e.g. dropped by a slow subscription) or its connection drops, then waits for the
  consumer to be in sync again.
  JetStream stays the record: intents are acked only once the steps deciding them are stored,
  and a restart redelivers what was not acked, each run skipping what its snapshot says it
  decided (`intent_seq` or `ahead`). Ordering: while in sync, intents are decided in publish
  order; a backlog (after a restart, or a burst the hot path cannot keep up with) is decided from
  JetStream in stream order. An order past a run's end only ends it from JetStream (in order).
- Every change to a run is applied in memory at once and stored as a `RunUpdate` on
  `paper.update.<run_id>` by `commit.Committer`: one update in flight per run, steps queued
  meanwhile stored together in the next one (each update carries the snapshot after its last
  step), a failed publish retried under the same message id, never skipped; then the snapshot alone
  on `paperstate.<run_id>` (PAPERSTATE, one per run). A batch of intents is acked only once every
  step queued so far (any run's) is stored (AckPolicy.ALL acks every earlier intent too); so after a
  crash or a restart the runs resume from their last stored update and the unacked intents are
  decided again, once: on start each durable is created again delivering from the first sequence a
  running run has not decided (or the old durable's ack floor + 1, if earlier), in order.
- svc.paper.start / stop / active (queue group `paper`), msgpack StartRun/StopRun/UserQuery in,
  msgpack PaperReply out; start and stop reply once the run's step is stored. Statuses: 201
  started; 200 stopped / the user's running runs; 400 undecodable request (the msgspec error names
  the field); 404 unknown verb, a run that is not the user's ("run '<id>' not found for user <id>"),
  or no active run to stop ("user <id> has no active run"); 409 the user's limit ("user <id>
  already has 5 active runs (the limit): stop one first") or a run that is not running ("run '<id>'
  is already stopped (requested)" / "... completed (duration)"); 422 a bad field
  (`services.paper.runs`); 503 the step could not be stored within 10 s; 500 an internal error
  (logged with the reference the detail names).
- Timers: settlement every 100 ms (wall clock: pending trades whose settled_at has passed are
  credited, each exactly once since the pending list is part of the stored snapshot; then runs
  that are over, with nothing pending and their last snapshot stored, leave memory:
  `_retire_finished`); run ends every 1 s (running runs past ends_at complete with stop_reason
  `duration` / `max_duration`, stopped_at = ends_at). After a restart the end timer waits until
  the intent backlog is decided, so intents made before a run's end are decided by it even when
  the service was down then.
- On start the service resumes every run from its last RunUpdate, the newer of PAPER's last
  update and PAPERSTATE's snapshot (PAPER may have discarded a quiet run's; running ones go on
  with balances and pending settlements intact; stopped ones still settle what they have pending;
  finished ones are only remembered as `retired`). On stop it stores what it decided (up to 10 s)
  and stops its consumers and timers: a service restart never stops a run.
- MT_PAPER_DEFAULT_RUN: the built-in user `default` gets a run from the MT_PAPER_* settings (label
  `default`) when it has none running (the demo's run).
- Live events (core NATS, JSON), once the step is stored: `ui.simulator.<user_id>.trade`
  ({"event": "simulator:trade", "data": TradeView}) for each trade, and `ui.simulator.<user_id>.run`
  ({"event": "simulator:run", "data": RunView}) at once on start, stop, end and settlement, and
  at most 4 times a second per run while it decides.
- Secrets (live validation) are read through `libs.users.secrets.load_secrets` in
  `libs.paper.exchange` and never logged.
- Garbage collection (process-wide): once started, the service moves every object alive into the
  collector's permanent generation (`gc.freeze()`: full collections otherwise rescanned the whole
  import heap and stalled intents for 50-70 ms), and turns automatic collection off while it runs,
  collecting on a timer instead (every GC_EVERY_S). Deciding allocates containers that live until
  their step is stored (decision columns, snapshots), so automatic young collections ran ~25 times
  a second at 500 intents/s and each stalled the loop for 0.3-1 ms (cache misses on every object
  they visit); the objects are freed by reference counting, and the cyclic garbage the collector
  exists for was ~16 objects in 2,500 intents. A full collection takes ~2 ms here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any

import msgspec
import numpy as np
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs.fees import fee_models
from libs.ids import new_id, now_ns
from libs.paper.books import BookHistory, MarketFacts
from libs.paper.engine import INTENT_OK, Engine, EngineSettings, Prepared, RunOutcome, warm_up
from libs.paper.views import trade_view
from proto import codec, streams, subjects
from proto.events import BookBatch, Intent, MarketInfo, Opportunity, PaperTrade
from proto.paper import PaperReply, RunUpdate, StartRequest, StartRun, StopRun, UserQuery
from proto.units import CASH_SCALE
from services.paper.commit import Committer
from services.paper.consumer import OrderedConsumer
from services.paper.core_feed import CoreFeed, CoreFeedUnsupported, connection_url
from services.paper.intake import BookIntake, MdEvent, last_updates
from services.paper.runs import PaperRun, Part, RunError, first_snapshot, new_config
from services.runtime import Service

INTENT_DURABLE = "paper-intents"
OPP_DURABLE = "paper-opps"
QUEUE = "paper"
DEFAULT_USER = "default"
SETTLE_TICK_S = 0.1
END_TICK_S = 1.0
UI_MIN_INTERVAL_S = 0.25
STORE_TIMEOUT_S = 10.0
BOOK_SYNC_TIMEOUT_S = 0.5
SEEN_MAX = 200_000
"""Order ids remembered (with their stream sequence) to skip one published twice as two messages."""
HOT_BATCH = 512
HOT_BATCH_MIN = 8
"""Fewer hot-path intents than this queued together are decided one by one (`Engine.decide_one`,
~60 us each for 5 runs, warm), more as one batch (~130 us for a batch of one, ~20 us an intent
in a big one)."""
HOT_CONFIRM_LINGER_S = 0.02
"""While the hot path is on, JetStream's copies of intents mostly confirm decisions already made:
the intent consumer lets them gather this long per batch (one ack per batch)."""
HOT_IDLE_WAIT_S = 0.005
"""Most the intent consumer waits, before a batch, for the hot path to take what has arrived."""
AHEAD_MAX = 10_000
"""Most hot-path intents a run may have decided ahead of the intent consumer: beyond, JetStream is
not keeping up and intents wait for it."""
AHEAD_TTL_NS = 600 * 1_000_000_000
"""A hot-path intent whose JetStream copy has not come by the time the consumer reaches intents this
much newer (their `ts`) never will (its publish was refused): the run forgets it. Generous, so that
producers' clocks (detect's, stamping `ts`) may disagree by minutes without an intent being
decided twice."""
GC_EVERY_S = 10.0
"""Period of the full garbage collection that replaces automatic collection while paper runs."""
GC_SLOW_MS = 50.0
"""A collection longer than this is logged (a warning: cyclic garbage is piling up somewhere)."""
HOT_QUEUE_MAX = 100_000
"""Core copies waiting for the hot path beyond this are passed to JetStream (and the hot path goes
off until the consumer is in sync again): memory stays bounded if deciding stalls."""


class PaperService(Service):
    """Hosts every user's paper runs."""

    name = "paper"

    async def start(self) -> None:
        s = self.ctx.settings
        self._gc_was_enabled = False
        """Automatic garbage collection was on before this service turned it off (`stop` turns it back on)."""
        self.fees = fee_models(s)
        self.books = BookHistory(lookback_ns=round(s.paper_book_lookback_s * 1e9))
        self.facts = MarketFacts()
        self.engine = Engine(
            EngineSettings(
                latency_ns=round(s.paper_latency_ms * 1e6),
                leg_gap_ns=round(s.paper_leg_gap_ms * 1e6),
                max_book_age_ns=round(s.paper_max_book_age_s * 1e9),
                validation=s.paper_validation,
            ),
            self.books,
            self.facts,
            self.fees,
        )
        await asyncio.to_thread(warm_up)  # the numba kernels, before any intent waits for them
        self.live: Any = None
        if s.paper_validation == "live":
            from libs.paper.exchange import LiveValidator

            self.live = LiveValidator(s, self.ctx.store, self.log, facts=self.facts)
        self.lock = asyncio.Lock()
        """Held while run state is read and changed (deciding, settling, starting, stopping)."""
        self.runs: dict[str, PaperRun] = {}
        """The runs in hand: running ones, and stopped ones until they are `_retire_finished`."""
        self.retired: dict[str, tuple[str, str, str]] = {}
        """Finished runs no longer in memory: run id → (user id, state, stop reason), so that a stop
        naming one is still answered 409 (a few dozen bytes a run)."""
        self.ignored: set[str] = set()
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._hot_ids: OrderedDict[str, None] = OrderedDict()
        self._hot_queue: asyncio.Queue[bytes] = asyncio.Queue()
        """Core copies (payloads) waiting for the hot path's loop."""
        self.decided = 0
        self.hot_decided = 0
        """Intents decided on the hot path (the rest came by JetStream first)."""
        self._closing: list[tuple[int, str]] = []
        """(ts, opportunity id) of closed opportunities the runs may still remember as traded."""
        self._intents_decided_ts = 0
        """The newest intent `ts` decided (intents are decided in publish order)."""
        self._hot_on = False
        self._hot_passed: set[str] = set()
        """Ids of core copies passed while the hot path was off, until JetStream delivers them."""
        self._intent_decoder = codec.decoder(Intent)
        self._hot_busy = False
        self._hot_feed: CoreFeed | None = None
        self._hot_first: str | None = None
        """The first intent the hot path decided since it last switched on."""
        self._hot_armed = False
        """JetStream has delivered `_hot_first`: every later intent it delivers must be one the hot
        path saw (earlier ones were passed while it was off, and come by JetStream as expected)."""
        self.ends_enabled = False
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Subscription] = []
        self.consumers: list[OrderedConsumer] = []
        self._ui_queue: asyncio.Queue[tuple[str, str, str, Any]] = asyncio.Queue()
        bus = self.ctx.bus
        self.committer = Committer(bus, self.log, self._on_stored, before_step=self._poll_hot)
        updates, stale = await last_updates(bus, self.log)
        for u in updates:
            rid = u.run.run_id
            if u.snapshot.state != "running" and not u.snapshot.pending and rid not in stale:
                self.retired[rid] = (u.run.user_id, u.snapshot.state, u.snapshot.stop_reason)
                continue
            self.runs[rid] = PaperRun(u.run, u.snapshot)
            if rid in stale:
                self.committer.resave(self.runs[rid], u)
        resumed = [r.run_id for r in self.runs.values() if r.running]
        if self.runs or self.retired:
            self.log.info("runs loaded", runs=len(self.runs), running=len(resumed), retired=len(self.retired))
        self.intake = await BookIntake(bus, self._on_md, lookback_s=s.paper_book_lookback_s, log=self.log).start()
        if not await self.intake.caught_up(timeout_s=60):
            self.log.warning("book intake still behind the MD stream after 60s; deciding anyway")
        self._tasks = [asyncio.create_task(self._ui_sender(), name="paper:ui-sender")]
        self._subs.append(await bus.nc.subscribe(subjects.SVC_PAPER_ALL, queue=QUEUE, cb=self._on_request))
        if s.paper_default_run and not any(r.running and r.user_id == DEFAULT_USER for r in self.runs.values()):
            await self._start_default()
        # Each durable is created again delivering from the first sequence a running run has not
        # decided (or the old durable's ack floor, if earlier): what the last instance fetched and
        # did not store comes first, in order (`consumer.OrderedConsumer.start`).
        self.consumers = [
            await OrderedConsumer(
                bus,
                stream=streams.INTENT.name,
                durable=INTENT_DURABLE,
                filter_subject=subjects.INTENT_ALL,
                kind=Intent,
                ack_wait_s=s.ack_wait_s,
                handler=self.on_intents,
                log=self.log,
                batch=512,
                linger=lambda: HOT_CONFIRM_LINGER_S if self._hot_on else 0.0,
            ).start(resume_from=self._resume_from("intent")),
            await OrderedConsumer(
                bus,
                stream=streams.OPP.name,
                durable=OPP_DURABLE,
                filter_subject=subjects.OPP_ALL,
                kind=Opportunity,
                ack_wait_s=s.ack_wait_s,
                handler=self.on_opportunities,
                log=self.log,
                batch=256,
            ).start(resume_from=self._resume_from("success_span")),
        ]
        if s.paper_hot_path:
            await self._subscribe_hot(bus)
            self._tasks.append(asyncio.create_task(self._hot_loop(), name="paper:hot"))
        self._tasks += [
            asyncio.create_task(self._settle_loop(), name="paper:settle"),
            asyncio.create_task(self._end_loop(), name="paper:ends"),
            asyncio.create_task(self._ui_loop(), name="paper:ui"),
        ]
        # Everything alive now (modules, numba's compiled kernels, the runs) lives as long as the
        # process: moved out of the collector's sight, a full collection no longer rescans it (one
        # took 50-70 ms here, stalling every intent behind it).
        gc.collect()
        gc.freeze()
        self._gc_was_enabled = gc.isenabled()
        gc.disable()
        self._tasks.append(asyncio.create_task(self._gc_loop(), name="paper:gc"))

    async def _gc_loop(self) -> None:
        """Collect cyclic garbage every GC_EVERY_S (automatic collection is off while paper runs)."""
        while True:
            await asyncio.sleep(GC_EVERY_S)
            t0 = time.perf_counter()
            found = gc.collect()
            took_ms = (time.perf_counter() - t0) * 1e3
            if took_ms > GC_SLOW_MS:
                self.log.warning("slow garbage collection", took_ms=round(took_ms, 1), unreachable=found)

    async def _subscribe_hot(self, bus: Any) -> None:
        """The hot path's core copies: on a connection of its own (`core_feed.CoreFeed`), or through
        nats-py when the server wants what that does not speak (TLS)."""
        try:
            self._hot_feed = await CoreFeed(
                connection_url(bus.nc), subjects.INTENT_ALL, self._on_core, self._on_core_down, self.log
            ).start()
        except CoreFeedUnsupported as e:
            self.log.info("hot path through the service's connection", reason=str(e))

            async def on_msg(msg: Msg) -> None:
                self._on_core([msg.data])

            self._subs.append(
                await bus.nc.subscribe(
                    subjects.INTENT_ALL, cb=on_msg, pending_msgs_limit=100_000, pending_bytes_limit=256 << 20
                )
            )

    def _resume_from(self, source: str) -> int | None:
        """The first stream sequence (intents or opportunities) some running run has not decided yet;
        None when no run is running."""
        seqs = [r.snap.intent_seq if source == "intent" else r.snap.opp_seq for r in self.runs.values() if r.running]
        return min(seqs) + 1 if seqs else None

    async def stop(self) -> None:
        """Stop deciding, store what was decided (for up to 10 s), stop the timers. Runs stay as they
        are: they resume on the next start, and nothing not stored was acked."""
        for c in self.consumers:
            await c.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._gc_was_enabled:
            gc.enable()
        if self._hot_feed is not None:
            await self._hot_feed.close()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        async with self.lock:  # a decision in hand is queued before the drain
            pass
        finishing = [asyncio.create_task(c.finish(timeout_s=10)) for c in self.consumers]
        if not await self.committer.drain(timeout_s=10):
            self.log.warning("stopped with run steps not stored: their intents will be decided again")
        await asyncio.gather(*finishing)
        await self.intake.stop()
        if self.live is not None:
            await self.live.close()

    # -- market data -------------------------------------------------------------------------

    def _on_md(self, event: MdEvent) -> None:
        if event.venue not in self.fees:  # not a venue paper trades (a LOBSTER replay, a generated equity)
            if event.venue not in self.ignored:
                self.ignored.add(event.venue)
                self.log.info("ignoring market data of a venue without a fee model", venue=event.venue)
            return
        if isinstance(event, BookBatch):
            self.books.add(event)
        elif isinstance(event, MarketInfo):
            self.facts.update(event)

    async def _books_for(self, prep: Prepared) -> bool:
        """Whether some order names books the intake may not have applied yet (none of its legs has a
        book at or after the order's book time, the book detect priced it on): then wait for the
        intake to catch up with the stream (True when it did)."""
        need = prep.fail_at == INTENT_OK
        if not need.any():
            return False
        newest = prep.row_ts0.max(axis=1)
        missing = need & (newest < prep.book_ts)
        if not missing.any():
            return False
        return await self.intake.caught_up(timeout_s=BOOK_SYNC_TIMEOUT_S)

    # -- deciding ----------------------------------------------------------------------------

    async def on_intents(self, pairs: list[tuple[Intent, int]]) -> Awaitable[Any] | None:
        """Decide a batch of intents for every run watching them (consumer handler); returns what
        resolves once the decisions are stored (the consumer acks the intents then)."""
        if self._hot_on:
            await self._hot_idle()
        if self._hot_passed:
            self._hot_passed.difference_update(p[0].id for p in pairs)
        async with self.lock:
            return await self._decide([p[0] for p in pairs], [p[1] for p in pairs], "intent")

    async def on_opportunities(self, pairs: list[tuple[Opportunity, int]]) -> Awaitable[Any] | None:
        """A success-span decision for every `opened` opportunity, per watching run."""
        traded = [r.snap.traded for r in self.runs.values() if r.snap.traded]
        closed = [
            (p[0].ts, p[0].opportunity_id)
            for p in pairs
            if p[0].status == "closed" and any(p[0].opportunity_id in t for t in traded)
        ]
        if closed:
            self._closing = [*self._closing, *closed][-SEEN_MAX:]
            async with self.lock:
                self._forget_closed()
        opened = [p for p in pairs if p[0].status == "opened"]
        if not opened:
            return None
        async with self.lock:
            return await self._decide([p[0] for p in opened], [p[1] for p in opened], "success_span")

    def _forget_closed(self) -> None:
        """Runs forget the closed opportunities they traded (`snapshot.traded` stays small) once every
        intent made before the close is decided: detect sends an opening's intents before its close,
        and an intent of a forgotten opening would be taken again."""
        if not self._closing:
            return
        done = [o for ts, o in self._closing if ts <= self._intents_decided_ts]
        if not done:
            return
        self._closing = [(ts, o) for ts, o in self._closing if ts > self._intents_decided_ts]
        for run in self.runs.values():
            run.forget_traded(done)

    def _fresh(self, orders: list[Any], seq_list: list[int], source: str) -> tuple[list[Any], list[int]]:
        """Drop an order whose id came before under another stream sequence (a producer that published
        it twice, past JetStream's duplicate window): its decision and trade ids would repeat. A
        redelivery (same sequence) is left to the runs' sequence check."""
        keep_o: list[Any] = []
        keep_s: list[int] = []
        seen = self._seen
        span = source != "intent"
        for o, seq in zip(orders, seq_list, strict=True):
            key = f"span:{o.opportunity_id}" if span else o.id  # a str: not tracked by the garbage collector
            first = seen.setdefault(key, seq)
            if first != seq:
                self.log.warning("duplicate order skipped", source=source, id=key, seq=seq, first_seq=first)
                continue
            keep_o.append(o)
            keep_s.append(seq)
        while len(seen) > SEEN_MAX:
            seen.popitem(last=False)
        return keep_o, keep_s

    async def _decide(self, orders: list[Any], seq_list: list[int] | None, source: str) -> Awaitable[Any] | None:
        """Decide the orders for every running run (`seq_list` None: intents from the hot path);
        returns what resolves once every step queued so far (of any run) is stored. Not only the
        steps of this batch: with AckPolicy.ALL the batch's ack acks every earlier message too, and
        one of them may be decided (in memory) and not stored yet — a redelivery after ack_wait of an
        order whose step is still being stored, a batch whose deciding failed part-way and is being
        retried (both skipped here by the runs' sequences), or an intent decided on the hot path."""
        if source == "intent" and orders and seq_list is not None:
            latest = max(o.book_ts for o in orders)  # books before these intents' time are no longer needed
            self.books.hold_ns = latest if self.books.hold_ns is None else max(self.books.hold_ns, latest)
        try:
            await self._decide_runs(orders, seq_list, source)
        finally:
            for run in self.runs.values():  # even when a run's step raised after others were queued
                self.committer.kick(run)
        return None if seq_list is None else self._all_stored()  # the hot path acks nothing

    def _all_stored(self) -> Awaitable[Any] | None:
        waits = [self.committer.wait_stored(r) for r in self.runs.values() if r.stored < r.queued]
        return asyncio.gather(*waits) if waits else None

    async def _decide_runs(self, orders: list[Any], seq_list: list[int] | None, source: str) -> None:
        runs = [r for r in self.runs.values() if r.running]
        if not runs:
            return
        hot = seq_list is None
        if hot and len(orders) == 1 and self.live is None:
            if not self._decide_one(orders[0], runs):  # the book detect priced it on may be in flight
                await self.intake.caught_up(timeout_s=BOOK_SYNC_TIMEOUT_S)
                self._decide_one(orders[0], runs, books_checked=True)
            return
        if seq_list is not None:
            orders, seq_list = self._fresh(orders, seq_list, source)
            if not orders:
                return
            if self._hot_on and source == "intent":
                self._check_hot_missed(orders)
        seqs = None if seq_list is None else np.asarray(seq_list, np.int64)
        ts = np.fromiter((o.ts for o in orders), np.int64, len(orders))
        intent = source == "intent"
        watch = np.zeros((len(orders), len(runs)), np.bool_)
        ends: list[tuple[str, int] | None] = []
        last: list[int] = []
        aheads: list[dict[str, int] | None] = []
        for r, run in enumerate(runs):
            ahead = run.snap.ahead if intent else None
            w = run.watches(orders, seqs, ts, run.snap.intent_seq if intent else run.snap.opp_seq, ahead)
            watch[:, r] = w
            if seqs is None:  # hot: remembered as decided until the JetStream copy comes
                last.append(0)
                ends.append(None)  # an order past the run's end ends it when JetStream delivers it, in order
                new = {o.id: o.ts for o, x in zip(orders, w.tolist(), strict=True) if x}
                aheads.append({**(ahead or {}), **new} if new else None)
                continue
            top = int(seqs[w].max()) if w.any() else 0
            new_ahead = None
            if ahead:  # JetStream copies of hot-path decisions: forget them (and any gone stale)
                reached = [i for i, o in enumerate(orders) if o.id in ahead]
                if reached:
                    top = max(top, int(seqs[reached].max()))
                gone = {orders[i].id for i in reached}
                cutoff = int(ts.max()) - AHEAD_TTL_NS
                new_ahead = {k: v for k, v in ahead.items() if k not in gone and v >= cutoff}
                if len(new_ahead) == len(ahead):
                    new_ahead = None
            last.append(top)
            aheads.append(new_ahead)
            past = ts >= run.config.ends_at
            ends.append((run.end_reason(), run.config.ends_at) if past.any() else None)
        outcomes: list[RunOutcome | None] = [None] * len(runs)
        if watch.any():  # else only JetStream copies of hot-path decisions, or nothing the runs watch
            prep = self.engine.prepare(orders, source)  # type: ignore[arg-type]
            if await self._books_for(prep):
                prep = self.engine.prepare(orders, source)  # type: ignore[arg-type]
            limits = [run.limits() for run in runs]
            live = None
            if self.live is not None:
                live = await self.live.validate(prep, limits, self.engine.reaching_validation(prep, limits, watch))
            outcomes = self.engine.decide(prep, limits, watch, None, live)
        for run, outcome, end, seq, ahead in zip(runs, outcomes, ends, last, aheads, strict=True):
            if outcome is None and end is None:
                if intent and (ahead is not None or seq > run.snap.intent_seq):
                    run.reach(seq, run.snap.ahead if ahead is None else ahead)
                continue
            run.decision_step(outcome, source=source, last_seq=seq, end=end, ahead=ahead)
        self.decided += int(watch.sum())
        if hot:
            self.hot_decided += len(orders)
        if intent and not hot:  # stream order: every intent published before these is decided
            self._intents_decided_ts = max(self._intents_decided_ts, int(ts.max()))
            self._forget_closed()

    def _decide_one(self, order: Intent, runs: list[PaperRun], books_checked: bool = False) -> bool:
        """The hot path's lone intent (without live validation): `Engine.prepare_one` and
        `decide_one`, the decisions a batch of one would make, without building a batch's columns
        (most of its cost, for one intent). False, with nothing changed, when no leg has a book as
        new as the intent's and `books_checked` is not set: the caller lets the intake catch up
        and calls again (the book detect priced it on may be in flight)."""
        watching = [run for run in runs if run.admits(order, run.snap.ahead)]
        if watching:
            one = self.engine.prepare_one(order)
            if one.books_behind and not books_checked:
                return False
            outcomes = self.engine.decide_one(one, [run.limits() for run in watching])
            for run, outcome in zip(watching, outcomes, strict=True):
                run.decision_step(outcome, source="intent", last_seq=0, ahead={**run.snap.ahead, order.id: order.ts})
            self.decided += len(watching)
        self.hot_decided += 1
        return True

    # -- the hot path: intents as they arrive over core NATS -----------------------------------

    def _hot_ready(self) -> bool:
        """Whether the hot path may decide now: it switches on once the intent consumer is in sync
        (nothing older waiting in the stream) and stays on until JetStream delivers an intent the
        hot path had not seen (a core copy missed) or a run gets AHEAD_MAX intents ahead."""
        if not self._hot_on:
            self._hot_on = bool(self.consumers) and self.consumers[0].in_sync and not self._hot_passed
            self._hot_first, self._hot_armed = None, False
        if self._hot_on and any(len(r.snap.ahead) >= AHEAD_MAX for r in self.runs.values() if r.running):
            self._hot_on = False
        return self._hot_on

    async def _hot_idle(self, timeout_s: float = HOT_IDLE_WAIT_S) -> None:
        """Let the hot path take what core NATS has delivered so far. An intent's core copy reaches
        this connection before JetStream's copy, so once this returns the hot path has seen every
        intent of the batch in hand it is going to see (up to `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        await asyncio.sleep(0)  # a turn of the loop: the hot path's socket is read
        while (self._hot_busy or not self._hot_queue.empty()) and time.monotonic() < deadline:
            await asyncio.sleep(0)

    def _check_hot_missed(self, orders: list[Intent]) -> None:
        """Switch the hot path off when JetStream delivers, after the hot path's first intent since
        it switched on, an intent the hot path never saw (a core copy missed): JetStream's order
        until the consumer is in sync again."""
        for o in orders:
            if self._hot_armed:
                if o.id not in self._hot_ids:
                    self._hot_on = False
                    return
            elif o.id == self._hot_first:
                self._hot_armed = True

    def _on_core(self, payloads: list[bytes]) -> None:
        """Core copies as they are read (the feed's read callback): a few arriving while nothing
        else is in hand are decided here and now (`_hot_now`); the rest, and any that cannot be
        decided without waiting, queue for the hot path's loop, in order."""
        q = self._hot_queue
        if q.qsize() >= HOT_QUEUE_MAX:
            self._hot_on = False
            for p in payloads:
                self._passed(p)
            return
        k = 0
        if len(payloads) < HOT_BATCH_MIN and not self._hot_busy and q.empty() and not self.lock.locked():
            while k < len(payloads) and self._hot_now(payloads[k]):
                k += 1
        for p in payloads[k:]:
            q.put_nowait(p)

    def _poll_hot(self) -> None:
        """Hand on the intents waiting on the hot path's socket before a costly step of something
        else (`CoreFeed.poll`)."""
        if self._hot_feed is not None:
            self._hot_feed.poll()

    def _on_core_down(self) -> None:
        """The hot path's connection dropped: what is published until it is back comes only by
        JetStream, so the hot path waits until the intent consumer has delivered it (in sync again,
        seen afresh: a delivery with nothing behind it, or a pull expiring with nothing waiting)."""
        self._hot_on = False
        if self.consumers:
            self.consumers[0].in_sync = False

    def _hot_now(self, payload: bytes) -> bool:
        """Decide one core copy at once, if that needs no waiting: the hot path is on, no live
        validation, and its books are here. False: nothing changed, the loop must take it."""
        if self.live is not None or not self._hot_ready():
            return False
        try:
            order = self._intent_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):  # dead-lettered by the consumer
            return True
        if not self._hot_fresh([order]):
            return True  # a publish retried, or published twice
        runs = [r for r in self.runs.values() if r.running]
        try:
            if runs and not self._decide_one(order, runs):
                del self._hot_ids[order.id]  # not decided: the loop takes it afresh
                return False
        except Exception as e:  # JetStream delivers it: runs that did not decide it do then, in order
            self._hot_on = False
            self.log.warning("hot path failed; JetStream will deliver these intents", error=str(e))
            return True
        finally:
            for run in runs:
                self.committer.kick(run)
        if self._hot_first is None:
            self._hot_first = order.id
        return True

    def _passed(self, payload: bytes) -> None:
        """A core copy the hot path does not decide: JetStream will, and until it has, the hot path
        may not switch on (an intent after it would be decided first)."""
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            key = self._intent_decoder.decode(payload).id
            if len(self._hot_passed) < SEEN_MAX:
                self._hot_passed.add(key)

    async def _hot_loop(self) -> None:
        """Decide intents as their core-NATS copies arrive (whatever queued meanwhile together)."""
        q = self._hot_queue
        while True:
            payloads = [await q.get()]
            while len(payloads) < HOT_BATCH and not q.empty():
                payloads.append(q.get_nowait())
            await self._hot_run(payloads)

    async def _hot_run(self, payloads: list[bytes]) -> None:
        """One batch of the hot path, whatever happens (JetStream delivers what it misses)."""
        self._hot_busy = True
        try:
            await self._hot_batch(payloads)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._hot_on = False
            self.log.warning("hot path batch failed", error=str(e))
        finally:
            self._hot_busy = False

    async def _hot_batch(self, payloads: list[bytes]) -> None:
        """Decide a batch from the hot path (nothing when it is off: JetStream delivers them, in order)."""
        if not self._hot_ready():
            for p in payloads:
                self._passed(p)
            return
        orders: list[Intent] = []
        for p in payloads:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):  # dead-lettered by the consumer
                orders.append(self._intent_decoder.decode(p))
        try:
            async with self.lock:
                if not self._hot_ready():
                    return
                fresh = self._hot_fresh(orders)
                if fresh:
                    if self._hot_first is None:
                        self._hot_first = fresh[0].id
                    if len(fresh) >= HOT_BATCH_MIN or self.live is not None:
                        await self._decide(fresh, None, "intent")
                    else:  # a few queued: one by one is cheaper than a batch's columns, and the first is out sooner
                        for order in fresh:
                            await self._decide([order], None, "intent")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # JetStream delivers them: runs that did not decide them do then
            self._hot_on = False  # and in stream order: later intents wait for JetStream too
            self.log.warning("hot path failed; JetStream will deliver these intents", error=str(e))

    def _hot_fresh(self, orders: list[Intent]) -> list[Intent]:
        """Intents neither JetStream delivered already nor the hot path saw (a publish retried, or
        published twice)."""
        seen, hot = self._seen, self._hot_ids
        fresh = []
        for o in orders:
            if o.id in seen or o.id in hot:
                continue
            hot[o.id] = None
            fresh.append(o)
        while len(hot) > SEEN_MAX:
            hot.popitem(last=False)
        return fresh

    def _store(self, runs: list[PaperRun]) -> Awaitable[Any] | None:
        """Send the runs' queued steps; what resolves once they are all stored."""
        for run in runs:
            self.committer.kick(run)
        waits = [self.committer.wait_stored(run) for run in runs]
        return asyncio.gather(*waits) if waits else None

    def _on_stored(self, run: PaperRun, update: RunUpdate, parts: list[Part]) -> None:
        """After a step is stored: its trades and (start, stop, end, settlement) the run to the UI."""
        for part in parts:
            for t in part.trades:
                self._ui_queue.put_nowait((t.user_id, "trade", "simulator:trade", t))
        if any(p.ui_run for p in parts):
            self._ui_run(run, time.monotonic())
        else:
            run.ui_dirty = True

    # -- timers ------------------------------------------------------------------------------

    async def _settle_loop(self) -> None:
        while True:
            await asyncio.sleep(SETTLE_TICK_S)
            try:
                async with self.lock:
                    now = now_ns()
                    settled = [r for r in self.runs.values() if r.settle_step(now) is not None]
                    self._retire_finished()
                self._store(settled)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # retried on the next tick
                self.log.warning("settlement failed, retrying", error=str(e))

    def _retire_finished(self) -> None:
        """Drop from memory the runs that are over (`PaperRun.finished`) once their last snapshot is
        in PAPERSTATE (`Committer.idle`): every step is in PAPER and ClickHouse, nothing is left to
        decide or settle, and a restart does not load them either. A service up for weeks would
        otherwise carry every run its users ever started, and walk them all on every timer tick."""
        for run in [r for r in self.runs.values() if r.finished and self.committer.idle(r.run_id)]:
            del self.runs[run.run_id]
            self.committer.forget(run.run_id)
            self.retired[run.run_id] = (run.user_id, run.snap.state, run.snap.stop_reason)

    async def _end_loop(self) -> None:
        await self._wait_backlog()
        self.ends_enabled = True
        while True:
            try:
                await self.complete_due(now_ns())
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.log.warning("ending runs failed, retrying", error=str(e))
            await asyncio.sleep(END_TICK_S)

    async def complete_due(self, now: int) -> list[str]:
        """Complete every running run whose ends_at has passed; their ids."""
        async with self.lock:
            due = [r for r in self.runs.values() if r.running and r.config.ends_at <= now]
            for r in due:
                r.stop_step(state="completed", reason=r.end_reason(), stopped_at=r.config.ends_at)
                self.log.info("run completed", run_id=r.run_id, reason=r.snap.stop_reason)
        self._store(due)
        return [r.run_id for r in due]

    async def _wait_backlog(self, timeout_s: float = 120.0) -> None:
        """Until the intents waiting when the service started are decided (or `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                info = await self.ctx.bus.js.consumer_info(streams.INTENT.name, INTENT_DURABLE)
                if not info.num_pending and not info.num_ack_pending:
                    return
            except Exception as e:
                self.log.warning("intent backlog unknown", error=str(e))
            await asyncio.sleep(0.2)

    # -- live events -------------------------------------------------------------------------

    def _ui_run(self, run: PaperRun, ui_now: float) -> None:
        run.ui_sent = ui_now
        run.ui_dirty = False
        self._ui_queue.put_nowait((run.user_id, "run", "simulator:run", run.view()))

    async def _ui_sender(self) -> None:
        """Publish queued live events (trade views are built here, off the deciding path)."""
        nc = self.ctx.bus.nc
        while True:
            user_id, kind, event, data = await self._ui_queue.get()
            try:
                subject = subjects.ui_simulator(user_id, kind)
            except ValueError:
                continue
            self._poll_hot()
            if isinstance(data, PaperTrade):
                data = trade_view(data, now_ns())
            with contextlib.suppress(Exception):  # live views are best effort; the stored update is the truth
                await nc.publish(subject, msgspec.json.encode({"event": event, "data": data}))
            await asyncio.sleep(0)  # one event per turn: an intent arriving meanwhile does not wait for the queue

    async def _ui_loop(self) -> None:
        """Runs that changed get their view out at most every UI_MIN_INTERVAL_S."""
        while True:
            await asyncio.sleep(UI_MIN_INTERVAL_S / 2)
            ui_now = time.monotonic()
            for run in list(self.runs.values()):
                if run.ui_dirty and ui_now - run.ui_sent >= UI_MIN_INTERVAL_S:
                    self._ui_run(run, ui_now)

    # -- svc.paper.* -------------------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        try:
            reply = await self.handle(verb, msg.data)
        except Exception as e:  # never leave a caller without an answer
            ref = new_id()
            self.log.exception("svc.paper request failed", verb=verb, ref=ref, error=str(e))
            reply = PaperReply(status=500, detail=f"internal error in the paper service (log reference {ref})")
        if msg.reply:
            await self.ctx.bus.nc.publish(msg.reply, codec.encode(reply))

    async def handle(self, verb: str, data: bytes) -> PaperReply:
        """One svc.paper.<verb> request (msgpack) → its reply."""
        kinds: dict[str, type] = {"start": StartRun, "stop": StopRun, "active": UserQuery}
        kind = kinds.get(verb)
        if kind is None:
            return PaperReply(status=404, detail=f"unknown verb svc.paper.{verb} (known: {', '.join(kinds)})")
        try:
            req = codec.decoder(kind).decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return PaperReply(status=400, detail=f"bad svc.paper.{verb} request: {e}")
        try:
            if isinstance(req, StartRun):
                return await self.start_run(req)
            if isinstance(req, StopRun):
                return await self.stop_run(req)
            return self.active(req)
        except RunError as e:
            return PaperReply(status=e.status, detail=e.detail)

    def _active_of(self, user_id: str) -> list[PaperRun]:
        runs = [r for r in self.runs.values() if r.running and r.user_id == user_id]
        return sorted(runs, key=lambda r: (r.config.started_at, r.run_id))

    async def _stored(self, run: PaperRun, what: str) -> None:
        """Wait (up to STORE_TIMEOUT_S) until the run's step is stored; 503 if it is not by then."""
        try:
            await asyncio.wait_for(asyncio.shield(self._store([run])), STORE_TIMEOUT_S)  # type: ignore[arg-type]
        except TimeoutError:
            raise RunError(
                503,
                f"run '{run.run_id}' {what}, but its step is not stored yet (the bus is slow or away); "
                "it will be stored when the bus answers",
            ) from None

    async def start_run(self, req: StartRun) -> PaperReply:
        """Start a run (201), or refuse it: 409 at the user's limit, 422 for a bad field."""
        s = self.ctx.settings
        async with self.lock:
            now = now_ns()
            cfg = new_config(
                req,
                now=now,
                max_duration_min=s.paper_max_duration_minutes,
                settlement_delay_ns=round(s.paper_settlement_delay_s * 1e9),
                validation=s.paper_validation,  # type: ignore[arg-type]
                venues=sorted(self.fees),
            )
            active = self._active_of(req.user_id)
            if len(active) >= s.paper_max_runs_per_user:
                raise RunError(
                    409, f"user {req.user_id} already has {len(active)} active runs (the limit): stop one first"
                )
            run = PaperRun(cfg, first_snapshot(cfg))
            run.start_step()
            self.runs[cfg.run_id] = run
        await self._stored(run, "was started")
        self.log.info("run started", run_id=cfg.run_id, user_id=cfg.user_id, label=cfg.label)
        return PaperReply(status=201, runs=[run.view()])

    async def stop_run(self, req: StopRun) -> PaperReply:
        """Stop a run of the user (by id, else their most recently started active one)."""
        async with self.lock:
            if req.run_id:
                run = self.runs.get(req.run_id)
                known = (run.user_id, run.snap.state, run.snap.stop_reason) if run else self.retired.get(req.run_id)
                user, state, reason = known or ("", "", "")
                if user != req.user_id:
                    raise RunError(404, f"run '{req.run_id}' not found for user {req.user_id}")
                if run is None or not run.running:
                    raise RunError(409, f"run '{req.run_id}' is already {state} ({reason})")
            else:
                active = self._active_of(req.user_id)
                if not active:
                    raise RunError(404, f"user {req.user_id} has no active run")
                run = active[-1]
            now = now_ns()
            run.stop_step(state="stopped", reason=req.reason, stopped_at=now)
        await self._stored(run, "was stopped")
        self.log.info("run stopped", run_id=run.run_id, user_id=run.user_id)
        return PaperReply(status=200, runs=[run.view()])

    def active(self, req: UserQuery) -> PaperReply:
        return PaperReply(status=200, runs=[r.view() for r in self._active_of(req.user_id)])

    async def _start_default(self) -> None:
        s = self.ctx.settings
        req = StartRun(
            user_id=DEFAULT_USER,
            request=StartRequest(starting_usd=s.paper_starting_usd, label="default"),
            min_net_edge_micros=round(s.paper_min_edge_cents * CASH_SCALE / 100),
            max_leg_micros=round(s.paper_max_leg_usd * CASH_SCALE),
            daily_cap_micros=round(s.paper_daily_cap_usd * CASH_SCALE),
        )
        try:
            reply = await self.start_run(req)
        except RunError as e:
            self.log.error("default run not started", status=e.status, detail=e.detail)
            return
        self.log.info("default run started", run_id=reply.runs[0].run_id)


SERVICE = PaperService
