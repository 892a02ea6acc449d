"""Benchmark against peers (issue #9): `python -m scripts.bench.peers` runs __main__.py, the harness.

The other files here are the peers' own pipelines. They run as plain files (`python datatrove_pipeline.py
...`) inside the peers' virtualenvs (.peers/<name>), or, for datatrove_minhash.py, with our interpreter in a
process of its own, so they import nothing of ours: only their peer library and peer_args.py next to them.
"""
