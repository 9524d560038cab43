"""JetStream streams: where durable data lives, and for how long."""

from __future__ import annotations

import msgspec


class StreamDef(msgspec.Struct, frozen=True, kw_only=True):
    """A JetStream stream: its name, the subjects it captures and its limits."""

    name: str
    subjects: list[str]
    max_age_s: float
    max_bytes: int = -1
    duplicate_window_s: float = 120.0


GiB = 1024**3

MD = StreamDef(name="MD", subjects=["md.>"], max_age_s=24 * 3600, max_bytes=4 * GiB)
OPP = StreamDef(name="OPP", subjects=["opp.>"], max_age_s=7 * 24 * 3600, max_bytes=GiB)
INTENT = StreamDef(name="INTENT", subjects=["intent.>"], max_age_s=7 * 24 * 3600, max_bytes=GiB)
PAPER = StreamDef(name="PAPER", subjects=["paper.>"], max_age_s=30 * 24 * 3600, max_bytes=GiB)
DLQ = StreamDef(name="DLQ", subjects=["dlq.>"], max_age_s=30 * 24 * 3600, max_bytes=GiB)

ALL: tuple[StreamDef, ...] = (MD, OPP, INTENT, PAPER, DLQ)
