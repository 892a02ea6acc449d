"""The Stage contract and the registry that maps config names to stage classes.

A per-batch stage is a plain class over `pyarrow.Table` batches; it never imports Ray, so it can be unit-tested
on tiny tables and fused with its neighbours into one Ray task. It *annotates* and returns, per row, the reason
it would drop that row (or null); the runner decides — from the stage's ``action`` param — whether that reason
drops the row or is only recorded in ``flagged``. That keeps "annotate, then filter" in one place instead of in
every stage.

A global stage (dedup) needs the whole corpus and implements ``apply(ds, ctx)``: it receives an opaque dataset
of live rows and asks `ctx` (a `GlobalContext`, backed by the execution backend in jobs/ray_backend/) to map
over it, to run waves of tasks, and to build the dataset it returns. It never imports Ray either.

Stages are generic in their params: ``class MyStage(Stage[MyParams])`` sets ``Params`` and types
``self.params`` as ``MyParams``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Generic, Literal, Protocol, TypeVar, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from refinery.faults import maybe_fail
from refinery.location import Location
from refinery.registry import Registry
from refinery.schema import BASE_FIELDS

# Value types for params, so an impossible value (a negative count, a share above 1) is a config error with
# its location instead of a filter that silently keeps or drops everything.
Fraction = Annotated[float, Field(ge=0, le=1)]  # a share or a probability
NonNegFloat = Annotated[float, Field(ge=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]

BASE_COLUMNS = frozenset(f.name for f in BASE_FIELDS)


class Resources(BaseModel):
    """What one worker of a stage needs. The backend honours all three: GPU stages land on GPU nodes, and
    `memory_mb` keeps Ray from packing more workers on a node than its memory holds. A config may override any
    of them per stage (`resources:` next to `params:`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    memory_mb: int | None = Field(default=None, gt=0)
    # Custom Ray resources a node must offer (`ray start --resources`, cluster.yaml `resources`), e.g. a node
    # type reserved for a model: {"classifier_node": 1}.
    custom: dict[str, float] = Field(default_factory=dict)

    def with_(self, **overrides: Any) -> Resources:
        """These resources with some fields replaced (validated like a config)."""
        return Resources.model_validate({**self.model_dump(), **overrides})

    def ray_options(self) -> dict[str, Any]:
        """As Ray task/actor options."""
        opts: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            opts["num_gpus"] = self.num_gpus
        if self.memory_mb:
            opts["memory"] = self.memory_mb * (1 << 20)
        if self.custom:
            opts["resources"] = dict(self.custom)
        return opts

    def device(self) -> tuple[bool, tuple[str, ...]]:
        """What kind of node a worker needs: stages on different kinds of node are never fused."""
        return self.num_gpus > 0, tuple(sorted(self.custom))


class StageParams(BaseModel):
    """Base of every stage's params: unknown keys are config errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class FilterParams(StageParams):
    action: Literal["drop", "annotate"] = "drop"


StageResult = tuple[pa.Table, "pa.Array | None"]
P = TypeVar("P", bound=StageParams)


class Stage(ABC, Generic[P]):
    name: ClassVar[str]
    Params: ClassVar[type[StageParams]] = StageParams
    resources: Resources = Resources()  # class default; the config may override it per stage
    # Stateful stages (models) run on an actor pool so the model loads once per worker; stateless ones run as
    # tasks that Ray can fuse with their neighbours.
    stateful: bool = False
    kind: ClassVar[Literal["batch", "global"]] = "batch"
    params: P

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """`class X(Stage[XParams])` sets `X.Params = XParams`, so the type is written once."""
        super().__init_subclass__(**kwargs)
        if "Params" in cls.__dict__:
            return
        for base in getattr(cls, "__orig_bases__", ()):
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Stage):
                (arg,) = get_args(base)
                if isinstance(arg, type) and issubclass(arg, StageParams):
                    cls.Params = arg

    def __init__(
        self, params: P | Mapping[str, Any] | None = None, resources: Resources | None = None
    ) -> None:
        if params is None or isinstance(params, Mapping):
            params = self.Params(**(params or {}))  # type: ignore[assignment]
        self.params = params  # type: ignore[assignment]
        if resources is not None:
            self.resources = resources

    @property
    def action(self) -> str:
        return getattr(self.params, "action", "drop")

    def requires(self) -> tuple[str, ...]:
        """Columns that must exist before this stage (checked at config validation, with the stage's location).
        May depend on the params: a filter limited to some languages needs `lang`."""
        return ("id", "text")

    def output_fields(self) -> list[pa.Field]:
        """Columns this stage adds, so the committed schema is known before any data flows."""
        return []

    def resources_on(self, cluster_gpus: float) -> Resources:
        """The resources to ask for on a cluster with this many GPUs (decided when the run starts). A stage that
        can use a GPU but does not need one overrides it to ask for GPUs only where there are some."""
        return self.resources

    def describe(self) -> str | None:
        """A line for the run's start-up log (what this stage will do, e.g. which detectors are active), or None.
        Called on the driver before any work: must not load models."""
        return None

    def uncovered(self) -> list[str]:
        """What the config asks for but this installation cannot do (e.g. entity types without a model): the run
        start-up says it as a WARNING."""
        return []

    def setup(self) -> None:  # noqa: B027 (optional hook, empty by default)
        """Load heavy resources (models); called once per worker before the first batch."""

    @abstractmethod
    def process(self, batch: pa.Table) -> StageResult:
        """Return the annotated batch and an array of drop reasons (null = keep), or None if nothing drops."""

    def summarize(self, kept: pa.Table) -> dict[str, float]:
        """Counters for report.json computed from committed rows (e.g. PII counts by type), summed over batches."""
        return {}

    def decide(self, batch: pa.Table) -> pa.Array | None:
        """Drop reasons (null = keep) from the columns this stage stored, without recomputing them: what
        `refinery refilter` re-thresholds a committed output with. A stage that implements it must use the same
        function in `process`, so the two can never disagree. Raise `NotRecomputable` where the stored columns
        cannot decide under these params (e.g. a signal that was never computed)."""
        raise NotRecomputable(
            f"stage {self.name!r} keeps no signals its decision can be recomputed from; re-run the pipeline"
        )

    def refilter_problem(self, old: StageParams) -> str | None:
        """Why changing the params from `old` to this stage's params cannot be decided from stored signals (a
        param that changes how signals are computed), or None."""
        return None

    def __call__(self, batch: pa.Table) -> StageResult:
        return self.process(batch)


class NotRecomputable(Exception):
    """A decision that stored signals cannot reproduce (`Stage.decide`); the message says why."""


class GlobalBackend(Protocol):
    """What the execution backend does for a global stage (jobs/ray_backend implements it with Ray)."""

    def map_collect(
        self, ds: Any, fn: Callable[[pa.Table], pa.Table], rows: int, resources: Resources, name: str
    ) -> list[dict[str, Any]]: ...

    def run_wave(
        self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], resources: Resources, name: str
    ) -> list[Any]: ...

    def dataset_from(self, fn: Callable[[Any], pa.Table | None], items: Sequence[Any], name: str) -> Any: ...


@dataclass
class GlobalContext:
    """What a global stage may use: where to keep intermediates and state, the cluster's size, and the backend
    that runs its steps (so a stage reads as the steps of its algorithm, not as Ray Data calls)."""

    work: Location  # run-private scratch (resumable intermediates)
    state: Location  # persisted indexes shared across runs (next to the output)
    backend: GlobalBackend
    label: str = ""
    num_cpus: int = 1  # CPUs of the cluster
    num_gpus: float = 0.0  # GPUs of the cluster
    input_bytes: int = 0  # Parquet bytes of the checkpoint the stage reads (sizes its partitions)
    # the checkpoint's Parquet files (the rows `ds` holds): a final join may read rows back from them instead of
    # keeping a copy in its scratch
    inputs: list[Location] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)  # the stage's, config overrides applied
    reused_steps: list[str] = field(default_factory=list)  # steps a resumed run did not redo

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run one step of the stage's algorithm once per run. Its result (JSON) is recorded after it finishes,
        so a run resumed after a crash reuses every finished step and redoes only the one that was running
        (which must therefore rewrite its own outputs from scratch)."""
        marker = self.work.join("_steps", f"{name}.json")
        done = marker.read_json_or_none(strict=True)
        if done is not None:
            self.reused_steps.append(name)
            return done["result"]
        result = fn()
        marker.write_json({"result": result}, indent=None)
        maybe_fail(f"step:{self.label}:{name}")  # recovery drills: crash right after a step finished
        return result

    def map_collect(
        self,
        ds: Any,
        fn: Callable[[pa.Table], pa.Table],
        rows: int,
        resources: Resources | None = None,
        name: str = "map",
    ) -> list[dict[str, Any]]:
        """Run `fn` over every slice of at most `rows` rows of `ds` (with the stage's resources) and return the
        rows of the small tables it returns (counters, partitions written), never the data."""
        return self.backend.map_collect(ds, fn, rows, resources or self.resources, f"{self.label}:{name}")

    def run_wave(
        self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], name: str | None = None
    ) -> list[Any]:
        """fn(*a) for each a, as parallel tasks (one CPU each, the stage's memory); their small results in order."""
        res = Resources(num_cpus=1, memory_mb=self.resources.memory_mb)
        label = name or getattr(fn, "__name__", "wave").lstrip("_")
        return self.backend.run_wave(fn, args, res, f"{self.label}:{label}")

    def dataset_from(self, fn: Callable[[Any], pa.Table | None], items: Sequence[Any]) -> Any:
        """The stage's output: fn(item) for each item, one unit of work each (tables of the same rows and columns
        it was given, plus its own, and `_drop` for rows to drop). `fn` must give the same table every time."""
        return self.backend.dataset_from(fn, items, self.label)


class GlobalStage(Stage[P]):
    """A stage that needs the whole corpus. ``apply`` receives only live rows and may set ``_drop``."""

    kind = "global"

    @abstractmethod
    def apply(self, ds: Any, ctx: GlobalContext) -> Any:
        """Return the dataset of the same rows with this stage's columns and `_drop` set for rows to drop."""

    def process(self, batch: pa.Table) -> StageResult:  # pragma: no cover - global stages have no batch path
        raise TypeError(f"{self.name} is a global stage; use apply()")


STAGES: Registry[type[Stage[Any]]] = Registry("stage", "stages", skip=("stages.readers",))
register = STAGES.decorator(lambda cls: getattr(cls, "name", ""))


def discover() -> dict[str, type[Stage[Any]]]:
    """Every registered stage by name (imports every module under `stages/` once)."""
    return STAGES.load()


def get_stage(name: str) -> type[Stage[Any]]:
    """A stage class by its registered name, or by import path `package.module:Class` (a stage of your own,
    importable wherever the job runs: installed, or shipped with `ray job submit --working-dir`)."""
    if ":" not in name:
        return STAGES.get(name)
    import importlib

    module, _, attr = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise KeyError(f"cannot import stage {name!r}: {type(e).__name__}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise KeyError(f"{name!r} is not a Stage class")
    return cls


def build_stage(
    name: str, params: Mapping[str, Any] | None, resources: Mapping[str, Any] | None = None
) -> Stage[Any]:
    """A stage from its config entry: params validated by its Params model, resources over its defaults."""
    cls = get_stage(name)
    stage = cls(cls.Params(**(params or {})))
    if resources:
        stage.resources = stage.resources.with_(**resources)
    return stage
