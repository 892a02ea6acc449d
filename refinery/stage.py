"""The Stage contract and the registry that maps config names to stage classes.

A per-batch stage is a plain class over `pyarrow.Table` batches; it never imports Ray, so it can be unit-tested
on tiny tables and fused with its neighbours into one Ray task. It *annotates* and returns, per row, the reason
it would drop that row (or null); the runner decides — from the stage's ``action`` param — whether that reason
drops the row or is only recorded in ``flagged``. That keeps "annotate, then filter" in one place instead of in
every stage.

A global stage (dedup) needs the whole corpus and implements ``apply(ds, ctx)`` on a Ray Dataset instead.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

# Value types for params, so an impossible value (a negative count, a share above 1) is a config error with
# its location instead of a filter that silently keeps or drops everything.
Fraction = Annotated[float, Field(ge=0, le=1)]  # a share or a probability
NonNegFloat = Annotated[float, Field(ge=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]


class Resources(BaseModel):
    """What one worker of this stage needs; Ray uses it for placement (GPU stages land on GPU nodes)."""

    model_config = ConfigDict(extra="forbid")
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_mb: int | None = None


class StageParams(BaseModel):
    """Base of every stage's params: unknown keys are config errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class FilterParams(StageParams):
    action: Literal["drop", "annotate"] = "drop"


StageResult = tuple[pa.Table, "pa.Array | None"]


class Stage:
    name: ClassVar[str]
    Params: ClassVar[type[StageParams]] = StageParams
    resources: ClassVar[Resources] = Resources()
    requires: ClassVar[tuple[str, ...]] = ("id", "text")
    # Stateful stages (models) run on an actor pool so the model loads once per worker; stateless ones run as
    # tasks that Ray can fuse with their neighbours.
    stateful: ClassVar[bool] = False
    kind: ClassVar[Literal["batch", "global"]] = "batch"

    def __init__(self, params: StageParams | Mapping[str, Any] | None = None) -> None:
        if params is None or isinstance(params, Mapping):
            params = self.Params(**(params or {}))
        self.params = params

    @property
    def action(self) -> str:
        return getattr(self.params, "action", "drop")

    def output_fields(self) -> list[pa.Field]:
        """Columns this stage adds, so the committed schema is known before any data flows."""
        return []

    def setup(self) -> None:
        """Load heavy resources (models); called once per worker before the first batch."""

    def process(self, batch: pa.Table) -> StageResult:
        """Return the annotated batch and an array of drop reasons (null = keep), or None if nothing drops."""
        raise NotImplementedError

    def summarize(self, kept: pa.Table) -> dict[str, float]:
        """Counters for report.json computed from committed rows (e.g. PII counts by type), summed over batches."""
        return {}

    def __call__(self, batch: pa.Table) -> StageResult:
        return self.process(batch)


class GlobalStage(Stage):
    """A stage that needs the whole corpus. ``apply`` receives only live rows and may set ``_drop``."""

    kind = "global"

    def apply(self, ds: Any, ctx: GlobalContext) -> Any:  # ray.data.Dataset -> ray.data.Dataset
        raise NotImplementedError

    def process(self, batch: pa.Table) -> StageResult:  # pragma: no cover - global stages have no batch path
        raise TypeError(f"{self.name} is a global stage; use apply()")


@dataclass
class GlobalContext:
    """What a global stage may use: where to keep intermediates and state, and how to reach storage."""

    work_uri: str  # run-private scratch prefix (resumable intermediates)
    state_uri: str  # persisted indexes shared across runs (next to the output)
    storage_options: dict[str, Any] = field(default_factory=dict)
    num_cpus: int = 1
    label: str = ""
    input_bytes: int = 0  # Parquet bytes of the checkpoint the stage reads (sizes its partitions)


_REGISTRY: dict[str, type[Stage]] = {}
_DISCOVERED = False


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make a stage usable by name in configs."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__qualname__} needs a `name`")
    other = _REGISTRY.get(name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise ValueError(f"stage name {name!r} is used by both {other.__module__} and {cls.__module__}")
    _REGISTRY[name] = cls
    return cls


def discover() -> dict[str, type[Stage]]:
    """Import every module under `stages/` once so their @register decorators run."""
    global _DISCOVERED
    if not _DISCOVERED:
        import stages

        for mod in pkgutil.walk_packages(stages.__path__, prefix="stages."):
            if mod.name.startswith("stages.readers"):
                continue
            importlib.import_module(mod.name)
        _DISCOVERED = True
    return dict(_REGISTRY)


def get_stage(name: str) -> type[Stage]:
    registry = discover()
    if name not in registry:
        raise KeyError(name)
    return registry[name]


def build_stage(name: str, params: Mapping[str, Any] | None) -> Stage:
    cls = get_stage(name)
    return cls(cls.Params(**(params or {})))
