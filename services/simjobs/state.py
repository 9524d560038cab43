"""The job API's memory: the latest state of every sim of recent jobs, fed by the SIM subjects.

Statuses reach every API replica on core NATS as they are published, so a job's status is
right the moment it is submitted, before the recorder has stored anything. A status only
replaces one with a lower version (`sim_status_version`: state rank, then time), the same rule
ClickHouse's `sim_status` table applies, so memory and the table agree on the latest state.
Old jobs are forgotten (least recently touched first) and read back from ClickHouse.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from libs.store.tables import sim_status_version
from proto.sim import SimJob, SimStatus

STATES = ("queued", "running", "completed", "error")
FINISHED = ("completed", "error")
MAX_JOBS = 256
"""Jobs kept in memory; older ones are read back from ClickHouse when asked for."""


@dataclass
class SimView:
    """What the API knows of one sim of one job."""

    state: str
    version: int
    progress: float = 0.0
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class JobView:
    """One job and its sims' latest states (`job` is None while only statuses have been seen)."""

    job: SimJob | None = None
    sims: dict[str, SimView] = field(default_factory=dict)
    touched: float = field(default_factory=time.monotonic)

    @property
    def sim_ids(self) -> list[str]:
        return self.job.sim_ids if self.job is not None else sorted(self.sims)

    def state_of(self, sim_id: str) -> SimView:
        """A sim's view; one never heard of is queued (its job was submitted)."""
        return self.sims.get(sim_id) or SimView(state="queued", version=0)

    def summary(self) -> dict[str, int]:
        counts = Counter(self.state_of(s).state for s in self.sim_ids)
        return {state: counts.get(state, 0) for state in STATES}

    def is_complete(self) -> bool:
        return all(self.state_of(s).state in FINISHED for s in self.sim_ids)

    def progress(self) -> float:
        """0..1 over the job: finished sims count 1, running ones their own progress."""
        ids = self.sim_ids
        if not ids:
            return 0.0
        done = 0.0
        for s in ids:
            v = self.state_of(s)
            done += 1.0 if v.state in FINISHED else (v.progress if v.state == "running" else 0.0)
        return done / len(ids)


class JobBook:
    """Recent jobs by id, with the latest state of each of their sims."""

    def __init__(self, max_jobs: int = MAX_JOBS) -> None:
        self.max_jobs = max_jobs
        self.jobs: dict[str, JobView] = {}

    def view(self, job_id: str, create: bool = False) -> JobView | None:
        view = self.jobs.get(job_id)
        if view is None and create:
            view = self.jobs[job_id] = JobView()
            self._evict()
        if view is not None:
            view.touched = time.monotonic()
        return view

    def add_job(self, job: SimJob) -> JobView:
        view = self.view(job.job_id, create=True)
        assert view is not None
        view.job = job
        return view

    def apply(self, status: SimStatus) -> None:
        """Take a status if it is newer (by version) than what the sim has."""
        view = self.view(status.job_id, create=True)
        assert view is not None
        self.apply_to(
            view,
            status.sim_id,
            SimView(
                state=status.state,
                version=sim_status_version(status.state, status.ts),
                progress=status.progress,
                error=status.error,
                metrics=dict(status.metrics),
            ),
        )

    @staticmethod
    def apply_to(view: JobView, sim_id: str, new: SimView) -> None:
        old = view.sims.get(sim_id)
        if old is None or new.version > old.version:
            if not new.metrics and old is not None and old.metrics:
                new.metrics = old.metrics
            view.sims[sim_id] = new

    def jobs_of_sim(self, sim_id: str) -> list[JobView]:
        """The remembered jobs that include `sim_id` (the same sim id may be in several jobs)."""
        return [v for v in self.jobs.values() if sim_id in v.sims or (v.job is not None and sim_id in v.job.sim_ids)]

    def _evict(self) -> None:
        while len(self.jobs) > self.max_jobs:
            oldest = min(self.jobs, key=lambda j: self.jobs[j].touched)
            del self.jobs[oldest]
