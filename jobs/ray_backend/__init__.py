"""The Ray backend: the only package that imports Ray (apart from the entry points that start it).

- cluster.py: starting or joining Ray, clean stops on SIGTERM/SIGINT;
- executor.py: `RayBackend.execute(plan)`: the Ray Data plan of a run;
- operators.py: reading, fused stage groups (tasks or actor pools), the writer, checkpoint reads;
- global_ops.py: what global stages ask for (maps, waves of tasks, a dataset per partition);
- ledger.py: the run's ledger actor (row counts per read task, seconds per stage).
"""

from jobs.ray_backend.cluster import Stopped, catch_stop_signals

__all__ = ["Stopped", "catch_stop_signals"]
