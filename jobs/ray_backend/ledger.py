"""The run's ledger actor: per-stage seconds (best effort) and per-read-task row counts (exact).

Read counts are kept by task key with last-write-wins, so a Ray task that is retried reports the same key again
instead of adding to it; the driver checks them against the rows of the files it is about to publish.
"""

from __future__ import annotations

from typing import Any

import ray

READ_LABEL, WRITE_LABEL = "(read)", "(write)"  # ledger keys of our reader and writer code (not stages)


@ray.remote
class RunLedger:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.tasks: dict[str, set[str]] = {}
        self.read_counts: dict[int, dict[str, Any]] = {}

    def add(self, seconds: dict[str, float], task_id: str | None = None) -> None:
        for k, v in seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v
            if task_id:
                self.tasks.setdefault(k, set()).add(task_id)

    def record_read(self, key: int, ledger: dict[str, Any]) -> None:
        self.read_counts[int(key)] = ledger

    def reads(self) -> dict[int, dict[str, Any]]:
        return dict(self.read_counts)

    def totals(self) -> dict[str, float]:
        return dict(self.seconds)

    def task_counts(self) -> dict[str, int]:
        """Distinct Ray tasks that reported under each key (shows whether Ray bundled work into fewer tasks)."""
        return {k: len(v) for k, v in self.tasks.items()}


def report_seconds(ledger_name: str | None, seconds: dict[str, float]) -> None:
    """Send seconds spent in our code to the run's ledger (best effort: never fail a batch over it).

    Waits for the actor to take them (one round trip per task or block): fire-and-forget calls still in flight
    when the driver asks for the totals would be lost."""
    if not ledger_name or not seconds:
        return
    try:
        task_id = ray.get_runtime_context().get_task_id()
        ray.get(ray.get_actor(ledger_name).add.remote(seconds, task_id), timeout=30)
    except Exception:
        pass


def report_reads(ledger_name: str | None, key: int, counts: dict[str, Any]) -> None:
    """Record how many rows read task `key` produced. Unlike timings this must arrive: a lost count fails the
    run's accounting check (which is the point: rows must never go missing unnoticed)."""
    if ledger_name:
        ray.get(ray.get_actor(ledger_name).record_read.remote(key, counts), timeout=120)
