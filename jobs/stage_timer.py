"""A tiny actor that sums per-stage seconds reported by workers (best-effort timing for the report)."""

from __future__ import annotations

import ray


@ray.remote
class StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, seconds: dict[str, float]) -> None:
        for k, v in seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v

    def totals(self) -> dict[str, float]:
        return dict(self.seconds)
