"""libs.bus on a real nats-server: streams, pull consumers, acks, dead letters."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from pathlib import Path

import msgspec
import pytest

from libs.bus import Bus, LocalNatsServer, PullConsumer
from libs.bus.admin import backlog, wait_idle
from proto import codec, streams, subjects
from proto.events import DeadLetter, Intent
from tests import factories


def intent(i: int) -> Intent:
    return factories.intent(f"intent-{i}", ts=i, net_edge_micros=i, net_edge_per_contract_micros=i, book_ts=i)


async def collect_dead_letters(bus: Bus, n: int, timeout: float = 10.0) -> list[DeadLetter]:
    sub = await bus.js.pull_subscribe(subjects.DLQ_ALL, durable="test-dlq-reader", stream=streams.DLQ.name)
    out: list[DeadLetter] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(out) < n and asyncio.get_running_loop().time() < deadline:
        try:
            for m in await sub.fetch(n - len(out), timeout=1):
                out.append(codec.decode(m.data, DeadLetter))  # type: ignore[arg-type]
                await m.ack()
        except TimeoutError:
            pass
    return out


async def test_streams_are_idempotent(bus: Bus) -> None:
    await bus.ensure_streams(streams.ALL)
    await bus.ensure_streams(streams.ALL)
    names = {s.config.name for s in await bus.js.streams_info()}
    assert {d.name for d in streams.ALL} <= names


async def test_publish_dedups_on_event_id(bus: Bus) -> None:
    s1 = await bus.publish(subjects.intent("xarb"), intent(1))
    s2 = await bus.publish(subjects.intent("xarb"), intent(1))
    assert s1 == s2
    info = await bus.js.stream_info(streams.INTENT.name)
    assert info.state.messages == 1


async def test_pull_consumer_delivers_in_order_and_acks(bus: Bus) -> None:
    got: list[int] = []

    async def handler(events: list[Intent]) -> None:
        got.extend(e.net_edge_micros for e in events)

    c = await PullConsumer(
        bus,
        stream="INTENT",
        durable="t1",
        filter_subjects=[subjects.INTENT_ALL],
        kind=Intent,
        handler=handler,
    ).start()
    await bus.publish_many((subjects.intent("xarb"), intent(i)) for i in range(500))
    assert await wait_idle(bus, [("INTENT", "t1")], timeout_s=20)
    await c.stop()
    assert got == list(range(500))
    assert await backlog(bus, "INTENT", "t1") == 0


async def test_undecodable_message_is_dead_lettered_and_consumer_goes_on(bus: Bus) -> None:
    got: list[str] = []

    async def handler(events: list[Intent]) -> None:
        got.extend(e.id for e in events)

    c = await PullConsumer(
        bus,
        stream="INTENT",
        durable="t2",
        filter_subjects=[subjects.INTENT_ALL],
        kind=Intent,
        handler=handler,
    ).start()
    await bus.publish(subjects.intent("xarb"), intent(1))
    await bus.js.publish(subjects.intent("xarb"), b"\x93not an intent")
    bad = msgspec.msgpack.encode({"type": "intent.v1", "id": "x", "ts": "not-an-int"})
    await bus.js.publish(subjects.intent("xarb"), bad)
    await bus.publish(subjects.intent("xarb"), intent(2))
    letters = await collect_dead_letters(bus, 2)
    assert await wait_idle(bus, [("INTENT", "t2")], timeout_s=10)
    await c.stop()
    assert got == ["intent-1", "intent-2"]
    assert len(letters) == 2
    assert all(dl.consumer == "t2" and dl.subject == "intent.xarb" for dl in letters)
    assert all(dl.reason.startswith("decode:") for dl in letters)
    assert "ts" in letters[1].reason  # names the bad field
    assert letters[1].data == bad  # the raw message is kept
    assert c.dead_lettered == 2


async def test_failing_handler_is_retried_then_dead_lettered_without_blocking_others(bus: Bus) -> None:
    attempts: dict[str, int] = {}
    done: list[str] = []

    async def handler(events: list[Intent]) -> None:
        for e in events:
            attempts[e.id] = attempts.get(e.id, 0) + 1
            if e.id == "intent-13":
                raise RuntimeError("poison")
            if e.id == "intent-7" and attempts[e.id] == 1:
                raise RuntimeError("transient")
        done.extend(e.id for e in events)

    c = await PullConsumer(
        bus,
        stream="INTENT",
        durable="t3",
        filter_subjects=[subjects.INTENT_ALL],
        kind=Intent,
        handler=handler,
        max_deliver=3,
        nak_delay_s=0.05,
    ).start()
    await bus.publish_many((subjects.intent("xarb"), intent(i)) for i in range(20))
    letters = await collect_dead_letters(bus, 1)
    assert await wait_idle(bus, [("INTENT", "t3")], timeout_s=10)
    await c.stop()
    assert sorted(set(done)) == sorted(f"intent-{i}" for i in range(20) if i != 13)
    assert len(letters) == 1
    assert letters[0].reason == "process: RuntimeError: poison"
    assert letters[0].deliveries == 3
    assert codec.decode(letters[0].data, Intent).id == "intent-13"


async def test_unacked_messages_come_back_after_a_restart(bus: Bus) -> None:
    seen: list[str] = []

    async def crash(events: list[Intent]) -> None:
        raise RuntimeError("down")

    async def ok(events: list[Intent]) -> None:
        seen.extend(e.id for e in events)

    kw = {"stream": "INTENT", "durable": "t4", "filter_subjects": [subjects.INTENT_ALL], "kind": Intent}
    c = await PullConsumer(bus, handler=crash, max_deliver=100, nak_delay_s=0.05, **kw).start()  # type: ignore[arg-type]
    await bus.publish_many((subjects.intent("xarb"), intent(i)) for i in range(10))
    await asyncio.sleep(0.3)
    await c.stop()
    assert seen == []
    c = await PullConsumer(bus, handler=ok, max_deliver=100, **kw).start()  # type: ignore[arg-type]
    assert await wait_idle(bus, [("INTENT", "t4")], timeout_s=10)
    await c.stop()
    assert sorted(set(seen)) == sorted(f"intent-{i}" for i in range(10))


def test_bad_durable_name_is_rejected(bus: Bus) -> None:
    async def handler(events: list[Intent]) -> None: ...

    with pytest.raises(ValueError, match=r"durable 'a\.b'"):
        PullConsumer(bus, stream="INTENT", durable="a.b", filter_subjects=["intent.>"], kind=Intent, handler=handler)


def test_local_server_speaks_websocket_for_dashboards(nats_server: LocalNatsServer) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{nats_server.ws_port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", nats_server.ws_port), timeout=5) as s:
        s.sendall(request.encode())
        reply = s.recv(4096).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 101"), reply
    assert nats_server.ws_url == f"ws://127.0.0.1:{nats_server.ws_port}"


def test_server_stops_and_frees_its_port(tmp_path: Path) -> None:
    server = LocalNatsServer(tmp_path / "n").start()
    port = server.port
    server.stop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # would raise if the server still held it
    assert (tmp_path / "n" / "jetstream").is_dir()


async def test_a_deleted_consumer_is_recreated_without_spinning(bus: Bus) -> None:
    got: list[str] = []

    async def handler(events: list[Intent]) -> None:
        got.extend(e.id for e in events)

    c = await PullConsumer(
        bus, stream="INTENT", durable="t5", filter_subjects=[subjects.INTENT_ALL], kind=Intent, handler=handler
    ).start()
    await bus.publish(subjects.intent("xarb"), intent(1))
    assert await wait_idle(bus, [("INTENT", "t5")], timeout_s=10)
    await bus.js.delete_consumer("INTENT", "t5")
    await asyncio.sleep(1.0)
    pulls = c.pulls
    await asyncio.sleep(1.0)
    assert c.pulls - pulls < 20, "pulls must back off, not spin"
    await bus.publish(subjects.intent("xarb"), intent(2))
    for _ in range(100):
        if "intent-2" in got:
            break
        await asyncio.sleep(0.1)
    await c.stop()
    assert got[0] == "intent-1" and "intent-2" in got


async def test_byte_bounded_pulls_deliver_everything_without_backing_off(bus: Bus) -> None:
    got: list[int] = []

    async def handler(events: list[Intent]) -> None:
        got.extend(e.net_edge_micros for e in events)

    big = [msgspec.structs.replace(intent(i), opportunity_key="k" * 10_000) for i in range(60)]
    c = await PullConsumer(
        bus, stream="INTENT", durable="t6", filter_subjects=[subjects.INTENT_ALL], kind=Intent, handler=handler,
        max_bytes=35_000,
    ).start()  # fmt: skip
    await bus.publish_many((subjects.intent("xarb"), ev) for ev in big)
    assert await wait_idle(bus, [("INTENT", "t6")], timeout_s=20)
    await c.stop()
    assert got == list(range(60))
    assert c._backoff == 0.0, "a request ended by max_bytes is not an error"


async def test_a_consumer_of_dead_letters_never_dead_letters_its_own_failures(bus: Bus) -> None:
    async def broken_store(events: list[DeadLetter]) -> None:
        raise RuntimeError("store down")

    await bus.js.publish(
        subjects.dlq("someone"), codec.encode(DeadLetter(consumer="x", subject="s", reason="r", data=b"", ts=1))
    )
    c = await PullConsumer(
        bus, stream=streams.DLQ.name, durable="t7", filter_subjects=[subjects.DLQ_ALL], kind=DeadLetter,
        handler=broken_store, max_deliver=2, nak_delay_s=0.05, dead_letter=False,
    ).start()  # fmt: skip
    assert await wait_idle(bus, [(streams.DLQ.name, "t7")], timeout_s=10)
    await c.stop()
    assert c.dead_lettered == 1
    info = await bus.js.stream_info(streams.DLQ.name)
    assert info.state.messages == 1, "no letter about the letter"
