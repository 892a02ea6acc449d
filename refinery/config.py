"""YAML config → validated pydantic models, with every error reported at its location before Ray starts.

Why this much care: a typo in a 3-hour job's config should cost seconds, not the job. Every key is checked
(unknown keys are errors), every stage name and every stage param is validated against the stage's own Params
model, and each error names the file, the dotted key path and the YAML line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from refinery.redact import redact_mapping, redact_uri, uri_has_userinfo


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_credentials(uri: str | None) -> str | None:
    """A URI is written to logs, manifests and every row's `source`: it must not carry a password."""
    if uri and uri_has_userinfo(uri) and ":" in uri.split("://", 1)[1].split("@", 1)[0]:
        raise ValueError(
            f"{redact_uri(uri)}: credentials inside a URI are not accepted (they would end up in logs "
            "and manifests); put them in storage_options (key, secret), which are redacted, or use "
            "the environment's credential chain"
        )
    return uri


SafeUri = Annotated[str, AfterValidator(_no_credentials)]


def _known_format(name: str) -> str:
    """Formats are whatever readers are registered (stages/readers/): one registry, no list to keep in step."""
    from stages.readers import format_names

    known = format_names()
    if name not in known:
        raise ValueError(f"unknown format {name!r} (known: {', '.join(known)})")
    return name


class InputConfig(_Strict):
    uri: SafeUri = Field(description="file, folder, glob or any fsspec URL (s3://bucket/prefix/)")
    format: Annotated[str, AfterValidator(_known_format)] = Field(
        default="auto", description="a reader's format (stages/readers/), or auto: by extension"
    )
    text_field: str = "text"
    id_field: str | None = None
    # Ids are the user's and may repeat (ids numbered per shard are common); nothing relies on them being unique.
    # Repeats are counted in report.json (duplicate_ids); keep them (warning), quarantine every repeat after the
    # first in input order (reason duplicate_id), or fail the run before anything is published.
    on_duplicate_id: Literal["keep", "quarantine", "error"] = "keep"
    storage_options: dict[str, Any] = Field(default_factory=dict)
    # Records bigger than this are quarantined (reason record_too_large) instead of blowing up a worker.
    max_record_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    # Compressed input that inflates more than this many times (output / compressed bytes, once over 4 MiB) is a
    # decompression bomb (quarantined, earlier records kept). Real text, JSON and HTML compress 3-20x, repetitive
    # logs up to ~100x; gzip of a single repeated byte reaches ~1030x, so 500 catches gzip bombs with margin.
    max_compression_ratio: float = Field(default=500.0, gt=1)
    # Uncompressed JSONL files larger than this are read as several parallel byte ranges.
    split_bytes: int = Field(default=128 * 1024 * 1024, gt=0)
    # How many rows a reader puts in one block.
    batch_rows: int = Field(default=2048, gt=0)
    # How much of a bad record is kept in quarantine for inspection.
    quarantine_raw_bytes: int = Field(default=64 * 1024, ge=0)
    extractor: Literal["trafilatura", "resiliparse", "combined"] = "trafilatura"
    inline_max_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    exclude: list[str] = Field(default_factory=list, description="glob patterns of files to skip")
    # Explicit input files (full URIs). When set, the pipeline reads exactly these instead of listing `uri`
    # (the nightly refresh passes the new and changed objects here). Default: list `uri`.
    files: list[SafeUri] | None = None


class OutputConfig(_Strict):
    uri: SafeUri
    storage_options: dict[str, Any] = Field(default_factory=dict)
    target_shard_mb: float = Field(default=128.0, gt=0)
    # In-memory Arrow data one writer batch may hold; bounds worker memory whatever the shard target.
    max_batch_mb: float = Field(default=48.0, gt=0)
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    # What to do when the output already holds a committed run of a *different* config or input.
    # (The same config on the same input is recognised and is a no-op.)
    if_exists: Literal["error", "overwrite"] = "error"
    # Persisted state shared across runs (dedup indexes, refresh state). Default: <uri>/_state.
    state_uri: SafeUri | None = None

    def resolved_state_uri(self) -> str:
        return self.state_uri or self.uri.rstrip("/") + "/_state"


class RayConfig(_Strict):
    address: str | None = Field(default=None, description="attach to a cluster; RAY_ADDRESS overrides")
    num_cpus: int | None = Field(default=None, gt=0, description="local mode only; default: all cores")
    object_store_mb: int | None = Field(default=None, gt=0, description="local mode only")
    batch_rows: int = Field(default=1024, gt=0, description="rows per stage batch")
    checkpoint_seconds: float | None = Field(
        default=30.0,
        ge=0,
        description="save a running unit's finished batches this often, so that a killed run or a retried task "
        "goes on from there (null: only whole units are saved)",
    )


class MonitoringConfig(_Strict):
    """Drift and bias thresholds of the refresh monitoring report (refinery/monitoring/drift.py, refinery/monitoring/profile.py).

    Exceeding a drift threshold raises an alert (exit code 3). Monitoring never changes the data, so this section
    is left out of the config hash (run ids stay the same when only a threshold changes).
    """

    drift_metric: Literal["js", "psi"] = "js"  # Jensen–Shannon divergence (base 2, in [0, 1]) or PSI
    max_lang_drift: float = Field(
        default=0.1, ge=0, description="language-mix drift vs the previous snapshot"
    )
    max_quality_drift: float = Field(default=0.1, ge=0, description="per quality-signal histogram drift")
    max_dedup_rate_change: float = Field(
        default=0.2, ge=0, description="absolute change of the dedup drop rate"
    )
    max_pii_rate_change: float = Field(
        default=0.2, ge=0, description="absolute change of PII hits per document"
    )
    quality_signals: list[str] = Field(
        default_factory=list, description="children of `quality` to track (default all numeric)"
    )
    histogram_bins: int = Field(default=20, gt=1, le=200)
    # Bias: flag a filter whose drop rate on one language/domain is > bias_ratio × its overall drop rate and at
    # least bias_min_gap higher in absolute terms, for groups with at least bias_min_rows rows.
    bias_ratio: float = Field(default=2.0, gt=1)
    bias_min_gap: float = Field(default=0.1, ge=0, le=1)
    bias_min_rows: int = Field(default=20, ge=1)
    top_domains: int = Field(default=20, ge=1)
    html_report: bool = Field(
        default=True, description="`refinery run` writes report.html beside report.json"
    )


class StageSpec(_Strict):
    stage: str
    params: dict[str, Any] = Field(default_factory=dict)
    # Overrides of the stage's declared resources (num_cpus, num_gpus, memory_mb), checked like every other key.
    resources: dict[str, Any] | None = None


class QuarantineConfig(_Strict):
    # Keep the raw bytes of a bad record (capped at input.quarantine_raw_bytes) for inspection. Default: yes,
    # unless a `pii` stage is configured: then quarantine must not become the one place personal data survives,
    # so raw is dropped; set true to keep it scrubbed by the pii stage's pattern recognizers instead.
    keep_raw: bool | None = None


class RunConfig(_Strict):
    name: str = "refinery"
    input: InputConfig
    output: OutputConfig
    ray: RayConfig = Field(default_factory=RayConfig)
    stages: list[StageSpec] = Field(default_factory=list)
    quarantine: QuarantineConfig = Field(default_factory=QuarantineConfig)
    licenses: dict[str, str] = Field(
        default_factory=dict, description="source uri prefix → licence, for data cards"
    )
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)

    def config_hash(self) -> str:
        """Hash of what the pipeline does: the same pipeline reached through other credentials, another endpoint
        (a proxy, a VPC endpoint) or other client settings is the same run, so `storage_options` are left out
        (the run id adds each input file's uri, size, etag and mtime, which identify the data itself).

        `monitoring` (thresholds only) is left out, and so are keys added after the first release while they hold
        their defaults, so that the hash of a config written before they existed does not change (its committed
        output is still recognised, and a refresh still knows its inputs)."""
        public = self.public_dict()
        public.pop("monitoring", None)
        for section in ("input", "output"):
            if isinstance(public.get(section), dict):
                public[section].pop("storage_options", None)
        if isinstance(public.get("ray"), dict):  # how often progress is saved does not change what is made
            public["ray"].pop("checkpoint_seconds", None)
        defaults = RunConfig.model_validate({"input": {"uri": "-"}, "output": {"uri": "-"}}).model_dump(
            mode="json"
        )
        for section, key in LATER_KEYS:
            node, default = public.get(section, {}), defaults.get(section, {})
            if key is None:
                if node == default:
                    public.pop(section, None)
            elif isinstance(node, dict) and node.get(key) == default.get(key):
                node.pop(key, None)
        blob = json.dumps(public, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def raw_policy(self) -> Literal["keep", "scrub", "drop"]:
        """What happens to quarantined records' raw bytes (see QuarantineConfig)."""
        has_pii = any(s.stage == "pii" for s in self.stages)
        keep = self.quarantine.keep_raw if self.quarantine.keep_raw is not None else not has_pii
        return "drop" if not keep else ("scrub" if has_pii else "keep")

    def public_dict(self) -> dict[str, Any]:
        return redact_mapping(self.model_dump(mode="json"))

    def secrets(self) -> list[str]:
        from refinery.redact import secret_values

        return secret_values(self.input.storage_options) + secret_values(self.output.storage_options)


# (section, key) added to the config after the first release; key None = the whole section.
LATER_KEYS = (
    ("input", "files"),
    ("input", "on_duplicate_id"),
    ("input", "max_compression_ratio"),
    ("quarantine", None),
)


class ConfigError(Exception):
    """All problems found in a config, each as (location, message)."""

    def __init__(self, source: str, errors: list[tuple[str, str]]):
        self.source = source
        self.errors = errors
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.source}: {len(self.errors)} config error(s)"]
        lines += [f"  {self.source}: {loc}: {msg}" for loc, msg in self.errors]
        return "\n".join(lines)


Context = Literal["run", "refresh"]


def load_config(
    path: str | os.PathLike[str], overrides: list[str] | None = None, context: Context = "run"
) -> RunConfig:
    """Read, override and fully validate a config file. Raises ConfigError listing every problem.

    `context="refresh"` adds the refresh's own rules (refinery/refresh/defaults.py)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(source, [("<file>", f"cannot read config: {e.strerror or e}")]) from None
    return parse_config(text, source, overrides, context)


def parse_config(
    text: str, source: str = "<config>", overrides: list[str] | None = None, context: Context = "run"
) -> RunConfig:
    def checks(
        raw: dict[str, Any], cfg: RunConfig | None, where: Callable[..., str]
    ) -> list[tuple[str, str]]:
        errors = _validate_stages(raw.get("stages"), where)
        if cfg is not None:
            errors += [(where(loc), msg) for loc, msg in overlapping_locations(cfg)]
            if context == "refresh" and not errors:
                from refinery.refresh.defaults import refresh_config_errors

                errors += refresh_config_errors(cfg.stages, where)
        return errors

    return parse_model(text, source, RunConfig, overrides, checks)


M = TypeVar("M", bound=BaseModel)


def parse_model(
    text: str,
    source: str,
    model: type[M],
    overrides: list[str] | None = None,
    checks: Callable[[dict[str, Any], M | None, Callable[..., str]], list[tuple[str, str]]] | None = None,
) -> M:
    """YAML text → a validated `model`, every error with its dotted key and YAML line (ConfigError). `checks`
    adds errors of its own (given the raw mapping, the model or None, and `where(loc)` to locate them)."""
    try:
        raw = yaml.safe_load(text)
        lines = _line_index(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}" if mark else "<yaml>"
        raise ConfigError(source, [(at, f"invalid YAML: {getattr(e, 'problem', e)}")]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, [("<root>", "the config must be a mapping")])
    errors: list[tuple[str, str]] = []
    for ov in overrides or []:
        try:
            _apply_override(raw, ov)
        except ValueError as e:
            errors.append((f"--set {redact_uri(ov)}", str(e)))

    def where(loc: tuple[Any, ...]) -> str:
        path = _dotted(loc)
        line = lines.get(tuple(loc))
        while line is None and loc:
            loc = loc[:-1]
            line = lines.get(tuple(loc))
        return f"{path} (line {line})" if line else path

    cfg: M | None = None
    try:
        cfg = model.model_validate(raw)
    except ValidationError as e:
        errors += [(where(err["loc"]), _message(err)) for err in e.errors()]
    if checks is not None:
        errors += checks(raw, cfg, where)
    if errors or cfg is None:
        raise ConfigError(source, errors)
    return cfg


def _validate_stages(stages: Any, where) -> list[tuple[str, str]]:
    from refinery.stage import BASE_COLUMNS, get_stage

    if not isinstance(stages, list):
        return []
    errors: list[tuple[str, str]] = []
    available = set(BASE_COLUMNS)
    for i, spec in enumerate(stages):
        if not isinstance(spec, dict) or not isinstance(spec.get("stage"), str):
            continue
        name = spec["stage"]
        try:
            cls = get_stage(name)
        except KeyError as e:
            errors.append(
                (where(("stages", i, "stage")), str(e.args[0]) if e.args else f"unknown stage {name!r}")
            )
            continue
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            continue  # the RunConfig validation already reported it
        try:
            inst = cls(cls.Params.model_validate(params))
        except ValidationError as e:
            errors += [(where(("stages", i, "params", *err["loc"])), _message(err)) for err in e.errors()]
            continue
        if isinstance(spec.get("resources"), dict):
            try:
                inst.resources.with_(**spec["resources"])
            except ValidationError as e:
                errors += [
                    (where(("stages", i, "resources", *err["loc"])), _message(err)) for err in e.errors()
                ]
        missing = [c for c in inst.requires() if c not in available]
        if missing:
            hint = " (add a `langid` stage before it)" if missing == ["lang"] else ""
            errors.append(
                (
                    where(("stages", i, "stage")),
                    f"stage {name!r} needs column(s) {missing} that no earlier stage makes{hint}",
                )
            )
        available.update(f.name for f in inst.output_fields())
    return errors


def overlapping_locations(cfg: RunConfig) -> list[tuple[tuple[Any, ...], str]]:
    """Outputs that overlap an input: an output inside an input is read back as input by the next run (its
    rows committed twice), and an input inside the output is at the mercy of the output's commit."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    outputs: list[tuple[tuple[Any, ...], str]] = [(("output", "uri"), cfg.output.uri)]
    if cfg.output.state_uri:
        outputs.append((("output", "state_uri"), cfg.output.state_uri))
    inputs: list[tuple[tuple[Any, ...], str]] = [(("input", "uri"), cfg.input.uri)]
    inputs += [(("input", "files", i), u) for i, u in enumerate(cfg.input.files or [])]
    for out_loc, out_uri in outputs:
        out = _location(out_uri, cfg.output.storage_options)
        for in_loc, in_uri in inputs:
            inp = _location(in_uri, cfg.input.storage_options)
            if out[:2] != inp[:2]:
                continue
            if out[2] == inp[2] or out[2].startswith(inp[2].rstrip("/") + "/"):
                problems.append(
                    (
                        out_loc,
                        f"{out_uri} is the input or inside it ({in_uri}): a run would read its "
                        "own output back; choose an output outside the input",
                    )
                )
            elif inp[2].startswith(out[2].rstrip("/") + "/"):
                problems.append(
                    (
                        in_loc,
                        f"{in_uri} is inside the output ({out_uri}): choose an output folder "
                        "that does not hold the input",
                    )
                )
    return problems


def _location(uri: str, storage_options: dict[str, Any]) -> tuple[str, str, str]:
    """(protocol, endpoint, path) with links resolved for local paths and anything from the first glob
    character on dropped, so that two spellings of one place compare equal."""
    proto, sep, rest = uri.partition("://")
    if not sep:
        proto, rest = "file", uri
    proto = {"local": "file", "s3a": "s3"}.get(proto.lower(), proto.lower())
    glob = min((i for i in (rest.find(c) for c in "*?[") if i >= 0), default=-1)
    if glob >= 0:
        rest = rest[: rest.rfind("/", 0, glob) + 1] or "."
    if proto == "file":
        return proto, "", os.path.realpath(os.path.expanduser(rest))
    endpoint = storage_options.get("endpoint_url") or (storage_options.get("client_kwargs") or {}).get(
        "endpoint_url"
    )
    return proto, str(endpoint or ""), "/" + rest.strip("/")


def _message(err: Mapping[str, Any]) -> str:
    if err.get("type") == "extra_forbidden":
        return "unknown key"
    if err.get("type") == "missing":
        return "missing required key"
    return str(err.get("msg"))


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def _line_index(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path to the 1-based line where it appears, so errors can point at the YAML."""
    index: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        index.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                index[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, path + (i,))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return index


def _apply_override(raw: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ValueError("expected dotted.key=value")
    key, value = override.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ValueError("empty key")
    parsed = yaml.safe_load(value) if value.strip() else ""
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ValueError(f"{'.'.join(parts[: i + 1])}: no such list index")
            idx = int(part)
            if last:
                node[idx] = parsed
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = parsed
            else:
                node = node.setdefault(part, {})
        else:
            raise ValueError(f"{'.'.join(parts[:i])} is not a mapping")
