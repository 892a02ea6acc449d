"""datatrove 0.10's 4-step MinHash pipeline (signatures, buckets, cluster, filter) on a folder of JSONL files.

Run by scripts/bench/dedup.py and scripts/eval/dedup.py (through `datatrove_minhash` in
scripts/bench/common.py) with our interpreter (the dev extra installs datatrove), in its own process and work
folder, as a plain file: it imports nothing of ours. Prints one line `TIMES {step: seconds}`; kept documents are in WORK/out/*.jsonl.

    python datatrove_minhash.py INPUT_DIR GLOB WORK NGRAM BANDS ROWS WORKERS
"""

import glob
import json
import os
import sys
import time

import datatrove.utils.hashes.xxhash as _dx
import xxhash
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig

# datatrove 0.10.1 passes str to xxhash, which xxhash >= 4 rejects; encode (what older xxhash did implicitly)
_dx.xxhash64 = lambda d: xxhash.xxh64_intdigest(d.encode() if isinstance(d, str) else d)
_dx.xxhash32 = lambda d: xxhash.xxh32_intdigest(d.encode() if isinstance(d, str) else d)


def main():
    inp, pattern, work = sys.argv[1], sys.argv[2], sys.argv[3]
    ngram, bands, rows, workers = map(int, sys.argv[4:8])
    cfg = MinhashConfig(
        hash_config=HashConfig(precision=64), n_grams=ngram, num_buckets=bands, hashes_per_bucket=rows
    )
    times = {}
    # one signature task per input file (datatrove shards by file); the filter step must use the same ranks
    files = max(1, len(glob.glob(os.path.join(inp, pattern))))
    steps = [
        (
            "signatures",
            [
                JsonlReader(inp, glob_pattern=pattern, id_key="id", text_key="text"),
                MinhashDedupSignature(f"{work}/sigs", config=cfg),
            ],
            files,
        ),
        ("buckets", [MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=cfg)], bands),
        ("cluster", [MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=cfg)], 1),
        (
            "filter",
            [
                JsonlReader(inp, glob_pattern=pattern, id_key="id", text_key="text"),
                MinhashDedupFilter(f"{work}/remove"),
                JsonlWriter(f"{work}/out", compression=None),
            ],
            files,
        ),
    ]
    for name, pipe, tasks in steps:
        t0 = time.time()
        LocalPipelineExecutor(
            pipeline=pipe,
            tasks=tasks,
            workers=min(workers, tasks),
            logging_dir=f"{work}/logs/{name}",
            skip_completed=False,
        ).run()
        times[name] = time.time() - t0
    print("TIMES " + json.dumps(times))


if __name__ == "__main__":  # LocalPipelineExecutor starts workers with forkserver: the guard is required
    main()
