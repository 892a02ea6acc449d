"""What a refresh changes in its dedup stages: they deduplicate against the published index unless told not to.

A refresh exists to publish only what is new. A dedup stage that keeps its default params in a plain run does not
read the persisted index (`against_index` unset = false), so the same config in a refresh republished near-copies
of documents an earlier snapshot holds. Inside a refresh the unset default is true; an explicit
`against_index: false` is a config error unless the stage also says `allow_republish: true`, and the refresh then
warns (docs/REFRESH.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

INDEX_KEYS = ("against_index", "allow_republish")


def _index_params(stage: str, params: dict[str, Any]) -> Any | None:
    """The stage's validated params when it is a dedup stage with a persisted index, else None."""
    from refinery.stage import get_stage

    try:
        cls = get_stage(stage)
        if not all(k in cls.Params.model_fields for k in INDEX_KEYS):
            return None
        return cls.Params.model_validate(params)
    except Exception:  # unknown stage or invalid params: reported by the general validation
        return None


def refresh_config_errors(
    stages: list[Any], where: Callable[[tuple[Any, ...]], str]
) -> list[tuple[str, str]]:
    """Config errors of a refresh's stages: `against_index: false` without `allow_republish: true`."""
    errors = []
    for i, spec in enumerate(stages):
        p = _index_params(spec.stage, spec.params)
        if p is not None and p.against_index is False and not p.allow_republish:
            errors.append(
                (
                    where(("stages", i, "params", "against_index")),
                    f"stage {spec.stage!r}: inside a refresh, against_index: false republishes documents that an "
                    "earlier snapshot already holds; remove the key (a refresh deduplicates against the "
                    "published index by default) or add allow_republish: true",
                )
            )
    return errors


def apply_refresh_defaults(stages: list[dict[str, Any]]) -> list[str]:
    """Set `against_index: true` on every index-backed dedup stage that leaves it unset (in place, on a raw
    config's `stages`). Returns the labels (`stages.N (name)`) of the stages that republish on purpose."""
    republish = []
    for i, spec in enumerate(stages):
        params = spec.setdefault("params", {})
        p = _index_params(spec["stage"], params)
        if p is None:
            continue
        if p.against_index is None:
            params["against_index"] = True
        elif p.against_index is False:
            republish.append(f"stages.{i} ({spec['stage']})")
    return republish
