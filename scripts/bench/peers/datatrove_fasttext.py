"""datatrove's FastTextClassifierFilter alone over a generated corpus, timed in CPU seconds (one process, one core).

Runs inside the datatrove peer virtualenv (.peers/datatrove); prints one JSON line. The model is loaded (and
copied into datatrove's asset cache) before the clock starts, as our side's model is.

    python datatrove_fasttext.py --input CORPUS --model MODEL.bin --label hq --min-prob 0.5 [--docs N]
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--min-prob", type=float, default=0.5)
    ap.add_argument("--docs", type=int, default=0)
    a = ap.parse_args()
    from datatrove.data import Document
    from datatrove.pipeline.filters import FastTextClassifierFilter

    texts = []
    for path in sorted(glob.glob(os.path.join(a.input, "part-*.jsonl.gz"))):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    if a.docs:
        texts = texts[: a.docs]
    # DCLM's preprocessing is " ".join(lines); datatrove's nearest is newline_replacement=" "
    filt = FastTextClassifierFilter(a.model, keep_labels=[(a.label, a.min_prob)], newline_replacement=" ")
    t0 = time.time()
    _ = filt.model  # load (and cache) the model before timing
    load_s = time.time() - t0
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    w0, c0 = time.perf_counter(), time.process_time()
    kept = sum(1 for _ in filt.run(iter(docs)))
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    print(
        json.dumps(
            {
                "peer": "datatrove",
                "docs": len(docs),
                "kept": kept,
                "cpu_s": cpu,
                "wall_s": wall,
                "load_s": load_s,
            }
        )
    )


if __name__ == "__main__":
    main()
