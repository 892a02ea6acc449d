"""NeMo Curator peer pipeline for `python -m scripts.bench.peers`. Runs INSIDE the peer virtualenv
(.peers/nemo), never ours, as a plain file: it imports only NeMo Curator and peer_args.py next to it.

NeMo Curator 1.4's CPU text pipeline with the closest equivalents of our steps, on RayDataExecutor (its default
Xenna executor refuses 2 CPUs):
    JsonlReader -> FastTextLangId (the same lid.176.ftz, min score 0.65)
    -> Gopher repetition: RepeatedLines/Paragraphs(+ByChar), RepeatingTopNGrams(2,3,4), RepeatingDuplicateNGrams(5..10)
    -> Gopher quality: WordCount(50..100000), MeanWordLength(3..10), SymbolsToWords(0.1), Bullets(0.9),
       Ellipsis(0.3), WordsWithoutAlphabets(0.8)
    -> C4-like: BoilerPlateString, Punctuation (sentence-end)
    -> JsonlWriter
With --stage-set shared (`python -m scripts.bench.peers --compare nemo-shared`): only the stages both have, as
ours runs them in that mode (langid -> gopher_repetition -> gopher_quality -> Parquet):
    JsonlReader -> FastTextLangId -> the Gopher repetition filters above -> the Gopher quality filters above
    + CommonEnglishWords(2) (Gopher's stop-word rule) -> ParquetWriter
Not available on CPU: fuzzy dedup (its MinHash/LSH/connected components need cudf/GPU) and PII (no CPU PII stage
in 1.4). Prints one JSON line on stdout.

    python nemo_pipeline.py --input CORPUS_DIR --work DIR --workers 2 --lid-model /path/lid.176.ftz
"""

from __future__ import annotations

import glob
import json
import os
import time

from peer_args import parse_args  # next to this file (see peer_args.py)


def main() -> None:
    a = parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray
    from nemo_curator.backends.ray_data import RayDataExecutor
    from nemo_curator.pipeline import Pipeline
    from nemo_curator.stages.text.filters import ScoreFilter
    from nemo_curator.stages.text.filters.fasttext import FastTextLangId
    from nemo_curator.stages.text.filters.heuristic import (
        BoilerPlateStringFilter,
        BulletsFilter,
        CommonEnglishWordsFilter,
        EllipsisFilter,
        MeanWordLengthFilter,
        PunctuationFilter,
        SymbolsToWordsFilter,
        WordCountFilter,
        WordsWithoutAlphabetsFilter,
    )
    from nemo_curator.stages.text.filters.heuristic.repetition import (
        RepeatedLinesByCharFilter,
        RepeatedLinesFilter,
        RepeatedParagraphsByCharFilter,
        RepeatedParagraphsFilter,
        RepeatingDuplicateNGramsFilter,
        RepeatingTopNGramsFilter,
    )
    from nemo_curator.stages.text.io.reader import JsonlReader
    from nemo_curator.stages.text.io.writer import JsonlWriter, ParquetWriter

    files = sorted(glob.glob(os.path.join(a.input, a.glob)))
    filters = [
        FastTextLangId(model_path=a.lid_model, min_langid_score=0.65),
        RepeatedLinesFilter(max_repeated_line_fraction=0.7),
        RepeatedParagraphsFilter(max_repeated_paragraphs_ratio=0.7),
        RepeatedLinesByCharFilter(max_repeated_lines_char_ratio=0.8),
        RepeatedParagraphsByCharFilter(max_repeated_paragraphs_char_ratio=0.8),
        RepeatingTopNGramsFilter(n=2, max_repeating_ngram_ratio=0.2),
        RepeatingTopNGramsFilter(n=3, max_repeating_ngram_ratio=0.18),
        RepeatingTopNGramsFilter(n=4, max_repeating_ngram_ratio=0.16),
        *[
            RepeatingDuplicateNGramsFilter(n=n, max_repeating_duplicate_ngram_ratio=r)
            for n, r in ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
        ],
        WordCountFilter(min_words=50, max_words=100000),
        MeanWordLengthFilter(min_mean_word_length=3, max_mean_word_length=10),
        SymbolsToWordsFilter(max_symbol_to_word_ratio=0.1),
        BulletsFilter(max_bullet_lines_ratio=0.9),
        EllipsisFilter(max_num_lines_ending_with_ellipsis_ratio=0.3),
        WordsWithoutAlphabetsFilter(min_words_with_alphabets=0.8),
    ]
    if a.stage_set == "shared":
        filters.append(CommonEnglishWordsFilter(min_num_common_words=2))
    else:
        filters += [
            BoilerPlateStringFilter(),
            PunctuationFilter(max_num_sentences_without_endmark_ratio=0.85),
        ]
    stages = [
        JsonlReader(
            file_paths=files,
            files_per_partition=1,
            fields=["id", "text"],
            file_extensions=[".gz"],
            read_kwargs={"compression": "gzip"},
        )
    ]
    stages += [ScoreFilter(f, text_field="text") for f in filters]
    writer = ParquetWriter if a.stage_set == "shared" else JsonlWriter
    stages += [writer(path=os.path.join(a.work, "out"), mode="overwrite")]
    pipe = Pipeline(name="bench", stages=stages)
    ray.init(num_cpus=a.workers, include_dashboard=False)
    t0 = time.time()
    pipe.run(RayDataExecutor())
    secs = time.time() - t0
    out_rows = 0
    if a.stage_set == "shared":
        import pyarrow.parquet as pq

        for p in glob.glob(os.path.join(a.work, "out", "*.parquet")):
            out_rows += pq.ParquetFile(p).metadata.num_rows
    else:
        for p in glob.glob(os.path.join(a.work, "out", "*.jsonl*")):
            with open(p, "rb") as f:
                out_rows += sum(1 for _ in f)
    print(
        json.dumps(
            {
                "peer": "nemo-curator",
                "seconds": round(secs, 3),
                "rows_out": out_rows,
                "stage_set": a.stage_set,
                "not_run": {}
                if a.stage_set == "shared"
                else {"fuzzy_dedup": "needs cudf/GPU in 1.4", "pii": "no CPU PII stage in 1.4"},
            }
        )
    )


if __name__ == "__main__":
    main()
