"""Stages that tests plug into configs by import path (`stage: tests.plugins:Pause`), never part of the product.

`Pause` slows a run down so that a test can stop, kill or crash it while parts are being written, without a test
hook in production code."""

from __future__ import annotations

import time

import pyarrow as pa
from pydantic import Field

from refinery.stage import Stage, StageParams, StageResult


class PauseParams(StageParams):
    seconds: float = Field(default=0.5, ge=0, description="sleep per batch")


class Pause(Stage[PauseParams]):
    name = "pause"

    def requires(self) -> tuple[str, ...]:
        return ()

    def process(self, batch: pa.Table) -> StageResult:
        time.sleep(self.params.seconds)
        return batch, None


def pause(seconds: float) -> dict:
    """The config entry of a Pause stage."""
    return {"stage": "tests.plugins:Pause", "params": {"seconds": seconds}}
