"""The run's ledger actor: per-stage seconds (best effort) and per-read-task row counts (exact).

Read counts are kept by task key with last-write-wins, so a Ray task that is retried reports the same key again
instead of adding to it; the driver checks them against the rows of the files it is about to publish.
"""

from __future__ import annotations

from typing import Any

import ray


@ray.remote
class StageTimer:
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
