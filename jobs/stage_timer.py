"""A tiny actor that sums per-stage seconds reported by workers (best-effort timing for the report)."""

from __future__ import annotations

import ray


@ray.remote
class StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.tasks: dict[str, set[str]] = {}

    def add(self, seconds: dict[str, float], task_id: str | None = None) -> None:
        for k, v in seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v
            if task_id:
                self.tasks.setdefault(k, set()).add(task_id)

    def totals(self) -> dict[str, float]:
        return dict(self.seconds)

    def task_counts(self) -> dict[str, int]:
        """Distinct Ray tasks that reported under each key (shows whether Ray bundled work into fewer tasks)."""
        return {k: len(v) for k, v in self.tasks.items()}
