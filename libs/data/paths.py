"""Where the shared real data sets live: `MT_DATA_DIR`, else `../shared/data` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The shared data folder: `MT_DATA_DIR` if set, else `<repo>/../shared/data`."""
    env = os.environ.get("MT_DATA_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data"


AMZN_DAY = Path("lobster/AMZN_2012-06-21_L1_fullday")
"""The full LOBSTER day the demo and benchmarks calibrate the simulator on."""
