"""Stages that tests plug into configs by import path (`stage: tests.plugins:Pause`), never part of the product.

`Pause` slows a run down so that a test can stop, kill or crash it while parts are being written, without a test
hook in production code; `CountRows` counts what a stage was given, so a test can tell what a run computed."""

from __future__ import annotations

import os
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


class CountRowsParams(StageParams):
    folder: str = Field(description="where each worker process appends the sizes of the batches it was given")


class CountRows(Stage[CountRowsParams]):
    """Counts the rows a stage is asked to process, across worker processes: what a resumed run computed again."""

    name = "count_rows"

    def requires(self) -> tuple[str, ...]:
        return ()

    def process(self, batch: pa.Table) -> StageResult:
        os.makedirs(self.params.folder, exist_ok=True)
        with open(os.path.join(self.params.folder, f"{os.getpid()}.txt"), "a") as f:
            f.write(f"{batch.num_rows}\n")
        return batch, None


def count_rows(folder: str) -> dict:
    """The config entry of a CountRows stage."""
    return {"stage": "tests.plugins:CountRows", "params": {"folder": folder}}


def counted_rows(folder: str) -> int:
    """Rows the CountRows stages writing into `folder` were given so far."""
    if not os.path.isdir(folder):
        return 0
    return sum(int(n) for name in os.listdir(folder) for n in open(os.path.join(folder, name)).read().split())
