"""The nightly refresh's state: snapshots and the `latest` pointer (snapshots.py), the lease lock (lock.py) and
the append-only run log (runlog.py). The refresh itself runs from jobs/refresh.py."""
