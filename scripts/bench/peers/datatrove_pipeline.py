"""datatrove peer pipeline for `python -m scripts.bench.peers`. Runs INSIDE the peer virtualenv
(.peers/datatrove), never ours, as a plain file: it imports only datatrove and peer_args.py next to it.

The same steps as our equivalent pipeline, with datatrove's own defaults:
    JsonlReader -> LanguageFilter (lid.176.ftz, local file) -> GopherRepetitionFilter -> GopherQualityFilter
    -> C4QualityFilter -> FineWebQualityFilter -> JsonlWriter(filtered) -> MinhashDedupSignature
    -> MinhashDedupBuckets -> MinhashDedupCluster -> (JsonlReader(filtered) -> MinhashDedupFilter -> PIIFormatter
    -> JsonlWriter(out))
All executors use LocalPipelineExecutor with tasks = workers = --workers. Prints one JSON line with per-step
seconds and doc counts (from datatrove's own stats) on stdout.

    python datatrove_pipeline.py --input CORPUS_DIR --work DIR --workers 2 --lid-model /path/lid.176.ftz
"""

from __future__ import annotations

import glob
import json
import os
import time

from peer_args import parse_args  # next to this file (see peer_args.py)


def main() -> None:
    a = parse_args()
    os.environ.setdefault("HF_HOME", os.path.join(a.work, "hf_home"))

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.lid import FT176LID

    model_url = "file://" + os.path.abspath(a.lid_model)

    class LocalFT176(FT176LID):
        MODEL_URL = model_url  # the same lid.176.ftz file our langid stage loads; nothing is downloaded

    class LocalLanguageFilter(LanguageFilter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.model = LocalFT176(self.languages)

    w = a.workers
    work = a.work
    cfg = MinhashConfig()  # 5-grams, 14 buckets x 8 hashes
    filtered = f"{work}/filtered"
    step1 = LocalPipelineExecutor(
        pipeline=[
            JsonlReader(a.input, glob_pattern=a.glob, text_key="text", id_key="id"),
            LocalLanguageFilter(),
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            C4QualityFilter(),
            FineWebQualityFilter(),
            JsonlWriter(filtered),
            MinhashDedupSignature(output_folder=f"{work}/sigs", config=cfg),
        ],
        tasks=w,
        workers=w,
        logging_dir=f"{work}/logs/1_filters_signatures",
    )
    step2 = LocalPipelineExecutor(
        pipeline=[
            MinhashDedupBuckets(input_folder=f"{work}/sigs", output_folder=f"{work}/buckets", config=cfg)
        ],
        tasks=cfg.num_buckets,
        workers=w,
        logging_dir=f"{work}/logs/2_buckets",
        depends=step1,
    )
    step3 = LocalPipelineExecutor(
        pipeline=[
            MinhashDedupCluster(
                input_folder=f"{work}/buckets", output_folder=f"{work}/remove_ids", config=cfg
            )
        ],
        tasks=1,
        workers=1,
        logging_dir=f"{work}/logs/3_cluster",
        depends=step2,
    )
    step4 = LocalPipelineExecutor(
        pipeline=[
            JsonlReader(filtered, text_key="text", id_key="id"),
            MinhashDedupFilter(input_folder=f"{work}/remove_ids"),
            PIIFormatter(),
            JsonlWriter(f"{work}/out"),
        ],
        tasks=w,
        workers=w,
        logging_dir=f"{work}/logs/4_filter_pii_write",
        depends=step3,
    )
    timings = {}
    t_all = time.time()
    for name, ex in (
        ("1_filters_signatures", step1),
        ("2_buckets", step2),
        ("3_cluster", step3),
        ("4_filter_pii_write", step4),
    ):
        t0 = time.time()
        ex.run()
        timings[name] = round(time.time() - t0, 3)
    total = time.time() - t_all
    steps = {}
    for stats_file in sorted(glob.glob(f"{work}/logs/*/stats.json")):
        phase = os.path.basename(os.path.dirname(stats_file))
        for st in json.load(open(stats_file)):
            name = st.get("name", "?")
            t = st.get("time_stats", {})
            steps[f"{phase}/{name}"] = {
                "seconds_total": round(t.get("total", 0.0), 3) if isinstance(t, dict) else None,
                "stats": {k: v for k, v in st.get("stats", {}).items() if isinstance(v, (int, float))},
            }
    print(json.dumps({"peer": "datatrove", "seconds": round(total, 3), "phases": timings, "steps": steps}))


if __name__ == "__main__":  # LocalPipelineExecutor starts workers with forkserver: the guard is required
    main()
