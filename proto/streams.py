"""JetStream streams: where durable data lives, and for how long."""

from __future__ import annotations

from typing import Literal

import msgspec


class StreamDef(msgspec.Struct, frozen=True, kw_only=True):
    """A JetStream stream: its name, the subjects it captures and its limits."""

    name: str
    subjects: list[str]
    max_age_s: float
    max_bytes: int = -1
    duplicate_window_s: float = 120.0
    max_msgs_per_subject: int = -1
    """Messages kept per subject (-1: no limit); 1 keeps only each subject's latest."""
    retention: Literal["limits", "workqueue"] = "limits"
    """`limits`: kept until max_age/max_bytes, for every consumer; `workqueue`: a message is
    removed once acked, so each one goes to exactly one worker of the consumer sharing it."""


GiB = 1024**3

MD = StreamDef(name="MD", subjects=["md.>"], max_age_s=24 * 3600, max_bytes=4 * GiB)
OPP = StreamDef(name="OPP", subjects=["opp.>"], max_age_s=7 * 24 * 3600, max_bytes=GiB)
INTENT = StreamDef(name="INTENT", subjects=["intent.>"], max_age_s=7 * 24 * 3600, max_bytes=GiB)
PAPER = StreamDef(name="PAPER", subjects=["paper.>"], max_age_s=30 * 24 * 3600, max_bytes=4 * GiB)
"""Run steps with their decisions: the last `paper.update.<run_id>` of each run is what a restarted
paper service resumes from, so it must outlive the run (30 days)."""
PAPERSTATE = StreamDef(name="PAPERSTATE", subjects=["paperstate.>"], max_age_s=365 * 24 * 3600, max_msgs_per_subject=1)
"""The latest snapshot of every paper run (`paperstate.<run_id>`, one message per subject): a quiet
run's last `paper.update.<run_id>` may be discarded from PAPER by its byte limit while busy runs fill
it; a restarted paper service resumes from whichever of the two holds the higher snapshot version."""
DLQ = StreamDef(name="DLQ", subjects=["dlq.>"], max_age_s=30 * 24 * 3600, max_bytes=GiB)

SIM = StreamDef(name="SIM", subjects=["sim.job.>", "sim.calibration.>"], max_age_s=7 * 24 * 3600, max_bytes=8 * GiB)
"""Simulation jobs, run statuses, results and calibrations: what the recorder stores. Results
are bulky (~1-2 MB a full-day run): the byte limit bounds the stream, not ClickHouse."""
SIMWORK = StreamDef(
    name="SIMWORK", subjects=["sim.work"], max_age_s=7 * 24 * 3600, max_bytes=2 * GiB, retention="workqueue"
)
"""Simulation tasks (one `SimTask` per Monte Carlo run), shared by every sim worker."""

ALL: tuple[StreamDef, ...] = (MD, OPP, INTENT, PAPER, PAPERSTATE, DLQ, SIM, SIMWORK)
