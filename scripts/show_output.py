"""Print where a config's committed output is and what it holds (used by scripts/run_local.sh).

python scripts/show_output.py CONFIG [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os

import pyarrow.dataset as pads

from refinery.commit import committed_manifest
from refinery.config import load_config


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    cfg = load_config(args.config, args.overrides)
    out = cfg.output.uri.rstrip("/")
    manifest = committed_manifest(out, cfg.output.storage_options)
    if manifest is None:
        raise SystemExit(f"{out} is not committed")
    data = [f for f in manifest["files"] if f["kind"] == "data"]
    shown = os.path.abspath(out) if "://" not in out else out
    print(f"\nCommitted output: {shown}")
    print(
        f"  data/        {len(data)} Parquet part(s), {sum(f['rows'] for f in data)} rows, "
        f"{sum(f['bytes'] for f in data) / 1e6:.2f} MB (zstd)"
    )
    for kind in ("quarantine", "droplog"):
        fs = [f for f in manifest["files"] if f["kind"] == kind]
        if fs:
            print(f"  {kind + '/':<13}{sum(f['rows'] for f in fs)} rows")
    print("  manifest.json, report.json, _SUCCESS")
    if "://" not in out:
        t = pads.dataset(os.path.join(out, "data"), format="parquet").head(1)
        print(f"  columns: {', '.join(t.schema.names)}")
        row = t.to_pylist()[0]
        print(f"  first row: id={row['id']} text={json.dumps(row['text'][:80], ensure_ascii=False)}…")
    print(
        f"\nRead it back:  python -c \"import pyarrow.dataset as ds; print(ds.dataset('{shown}/data').count_rows())\""
    )


if __name__ == "__main__":
    main()
