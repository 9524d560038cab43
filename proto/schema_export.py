"""Export JSON Schema for every event to proto/schema/, for non-Python consumers.

Run `markettwin schema` (or `python -m proto.schema_export`); a test fails when the files
on disk differ from what the code would export.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from proto import paper
from proto.events import EVENT_TYPES
from proto.sim import SIM_EVENT_TYPES, SimJobRequest, SimTask

SCHEMA_DIR = Path(__file__).parent / "schema"

UNTAGGED: dict[str, type[msgspec.Struct]] = {
    "sim.task": SimTask,
    "sim.job_request": SimJobRequest,
    "paper.start_run": paper.StartRun,
    "paper.stop_run": paper.StopRun,
    "paper.user_query": paper.UserQuery,
    "paper.reply": paper.PaperReply,
    "api.simulator.start_request": paper.StartRequest,
    "api.simulator.stop_request": paper.StopRequest,
    "api.simulator.run": paper.RunView,
    "api.simulator.trade": paper.TradeView,
    "api.simulator.decision": paper.DecisionView,
}
"""Wire structs without a `type` tag: the work item on `sim.work`, request/reply bodies on
`svc.sim.*` and `svc.paper.*`, and the simulator HTTP API's shapes."""


def render() -> dict[str, str]:
    """File name -> JSON text for every event type."""
    kinds: dict[str, type[msgspec.Struct]] = {
        str(k.__struct_config__.tag): k for k in EVENT_TYPES + SIM_EVENT_TYPES + (paper.RunUpdate,)
    }
    out: dict[str, str] = {}
    for name, kind in (kinds | UNTAGGED).items():
        schema = msgspec.json.schema(kind)
        out[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file, remove stale ones, return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render()
    for old in directory.glob("*.json"):
        if old.name not in rendered:
            old.unlink()
    paths = []
    for name, text in rendered.items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in export():
        print(p)
