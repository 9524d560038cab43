"""A finished run's files as result events small enough for NATS (max_payload 8 MB).

A full-day run is about 1-2 MB of columns (l1 on a 1-second grid is 23,400 rows x 5 x 8 bytes;
trades a few thousand rows), so it normally travels as one SimResult. Files are packed into
SimResults of at most `max_bytes` of column data; a single file larger than that (a very busy
day's trades) is cut into SimResultPart row ranges instead, each within the same budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from libs.ids import new_id, now_ns
from proto.sim import SimResult, SimResultPart, SimTask

MAX_RESULT_BYTES = 4 * 1024 * 1024
"""Column bytes per message: half of max_payload, leaving room for names and MessagePack framing."""


def wire_columns(file: str, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A file's columns as 1-D little-endian int64/float64 arrays of one length; ValueError otherwise."""
    out: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        a = np.asarray(values)
        if a.ndim != 1:
            raise ValueError(f"result file {file!r} column {name!r} is {a.ndim}-D; columns must be 1-D")
        if a.dtype.kind in "iub":
            a = a.astype("<i8", copy=False)
        elif a.dtype.kind == "f":
            a = a.astype("<f8", copy=False)
        else:
            raise ValueError(f"result file {file!r} column {name!r} has dtype {a.dtype}; expected int64 or float64")
        out[name] = np.ascontiguousarray(a)
    lengths = {len(a) for a in out.values()}
    if len(lengths) > 1:
        raise ValueError(
            f"result file {file!r} has columns of different lengths: { {k: len(v) for k, v in out.items()} }"
        )
    return out


def result_events(
    task: SimTask, files: Mapping[str, Mapping[str, np.ndarray]], max_bytes: int = MAX_RESULT_BYTES
) -> list[SimResult | SimResultPart]:
    """The messages that carry a run's files: SimResults of whole files, SimResultParts of big ones."""
    packs: list[dict[str, dict[str, np.ndarray]]] = [{}]
    used = 0
    events: list[SimResult | SimResultPart] = []
    for file, raw in files.items():
        cols = wire_columns(file, raw)
        size = sum(a.nbytes for a in cols.values())
        if size > max_bytes:
            events += _parts(task, file, cols, max_bytes)
            continue
        if used + size > max_bytes and packs[-1]:
            packs.append({})
            used = 0
        packs[-1][file] = cols
        used += size
    results: list[SimResult | SimResultPart] = [
        SimResult(
            id=new_id(),
            ts=now_ns(),
            job_id=task.job_id,
            sim_id=task.sim_id,
            files={f: {c: a.tobytes() for c, a in cols.items()} for f, cols in pack.items()},
            dtypes={f: {c: a.dtype.str for c, a in cols.items()} for f, cols in pack.items()},
        )
        for pack in packs
        if pack
    ]
    return results + events


def _parts(task: SimTask, file: str, cols: dict[str, np.ndarray], max_bytes: int) -> list[SimResult | SimResultPart]:
    n = len(next(iter(cols.values())))
    row_bytes = sum(a.itemsize for a in cols.values())
    per_part = max(1, max_bytes // row_bytes)
    n_parts = math.ceil(n / per_part)
    return [
        SimResultPart(
            id=new_id(),
            ts=now_ns(),
            job_id=task.job_id,
            sim_id=task.sim_id,
            file=file,
            part=k,
            n_parts=n_parts,
            row0=k * per_part,
            columns={c: a[k * per_part : (k + 1) * per_part].tobytes() for c, a in cols.items()},
            dtypes={c: a.dtype.str for c, a in cols.items()},
        )
        for k in range(n_parts)
    ]
