"""Fault injection for crash-safety tests: `REFINERY_FAIL_AT=<point>` makes `maybe_fail(<point>)` raise.

The nightly refresh must reach the same final state after a crash at any step as a run with no crash; tests (and
operators rehearsing a recovery) set the variable to crash at one named point. Points: `after_data` (parts
published, no manifest), `before_success` (manifest written, no `_SUCCESS`), `after_manifest` (snapshot
committed, pointer not moved), `after_pointer` (pointer moved, state store not updated), `after_state` (state
store updated, run not yet logged as finished), and `step:<stage label>:<step>` (a global stage's step, e.g.
`step:fuzzy_dedup:verify_b`, just finished and recorded). Unset (the default), this is a no-op.
"""

from __future__ import annotations

import os

ENV = "REFINERY_FAIL_AT"
POINTS = ("after_data", "before_success", "after_manifest", "after_pointer", "after_state")


class InjectedFailure(RuntimeError):
    """Raised at the point named by REFINERY_FAIL_AT."""


def maybe_fail(point: str) -> None:
    wanted = os.environ.get(ENV, "")
    if wanted and point in {p.strip() for p in wanted.split(",")}:
        raise InjectedFailure(f"injected failure at {point} ({ENV})")
