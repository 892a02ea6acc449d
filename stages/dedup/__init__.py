"""Global dedup stages (exact and MinHash-LSH) and their Ray-free helpers; see docs/DEDUP.md."""
