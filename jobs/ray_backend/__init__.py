"""The Ray backend: the only package that imports Ray (apart from the entry points that start it).

- cluster.py: starting or joining Ray, clean stops on SIGTERM/SIGINT;
- executor.py: `RayBackend.execute(plan)`: steps over units of work, global stages between them, resume;
- units.py: what one task does with a unit of work (read, stage group, staged parts) and its completion record;
- operators.py: the Ray Data operators: a step over its units (tasks or an actor pool), checkpoint reads;
- global_ops.py: what global stages ask for (maps, waves of tasks, their output partitions).
"""

from jobs.ray_backend.cluster import Stopped, catch_stop_signals

__all__ = ["Stopped", "catch_stop_signals"]
