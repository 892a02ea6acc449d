"""Starting (or joining) Ray, and stopping cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from refinery.config import RayConfig

log = logging.getLogger("refinery")


class Stopped(BaseException):  # noqa: N818 (like KeyboardInterrupt, not an error of the run)
    """SIGTERM or SIGINT reached the driver: stop where we are; nothing is published without `_SUCCESS`."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, _frame: Any) -> None:
    raise Stopped(signum)


def catch_stop_signals() -> None:
    """Turn SIGTERM/SIGINT into `Stopped` in the driver. `ray.init` installs a SIGTERM handler that calls
    sys.exit, which tears Ray down under its running threads and dies by SIGABRT with a C++ stack; so this also
    runs again after it."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_stopped)
        signal.signal(signal.SIGINT, _raise_stopped)


def init_ray(cfg: RayConfig) -> None:
    """Join `RAY_ADDRESS` / `ray.address`, or start an embedded local Ray sized by the config."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or cfg.address
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
        catch_stop_signals()
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    kwargs["num_cpus"] = cfg.num_cpus or os.cpu_count() or 1
    if cfg.object_store_mb:
        kwargs["object_store_memory"] = cfg.object_store_mb * (1 << 20)
    try:
        ray.init(**kwargs)
    except (
        Exception
    ) as e:  # Ray gives a local raylet a fixed 30 s to register; an overloaded machine can miss it
        if "timed out during startup" not in str(e):
            raise
        log.warning("local Ray did not start in time (overloaded machine?); trying once more")
        ray.shutdown()
        ray.init(**kwargs)
    catch_stop_signals()


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def shutdown() -> None:
    try:
        import ray

        ray.shutdown()
    except Exception:
        pass
