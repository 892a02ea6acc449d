"""Day 1 → day 2 → day 2 again with the real nightly pipeline, from the CLI, into OUT (default /tmp/refresh-demo).

Same inputs as tests/test_refresh.py (real lingua-py sentences from tests/fixtures/refresh). Prints each exit code
and the snapshot contents, then renders day 2's report.html in headless Chromium (scripts/screenshot_report.sh).
Run from the repository root: RAY_AUTH_MODE=disabled .venv/bin/python -m scripts.eval.refresh_demo [OUT]
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from scripts.bench.common import ROOT
from tests.test_refresh import make_config, snapshot_ids, write_day

days_fixture = __import__("tests.test_refresh", fromlist=["days"]).days.__wrapped__


def main() -> int:
    base = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/refresh-demo")
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    days = days_fixture()
    inputs, out = base / "inputs", base / "out"
    write_day(inputs, days["day1"])
    cfg = make_config(base, inputs, out)
    refinery = [str(ROOT / ".venv" / "bin" / "refinery")]
    codes = []
    for day, date in (("day1", "2026-01-01"), ("day2", "2026-01-02"), ("day2", "2026-01-03")):
        write_day(inputs, days[day])
        rc = subprocess.run(refinery + ["refresh", str(cfg), "--date", date], cwd=ROOT).returncode
        codes.append(rc)
        print(f"== refresh {day} ({date}): exit {rc}")
    for sid in ("20260101", "20260102"):
        got = snapshot_ids(out / "snapshots" / sid)
        print(f"snapshot {sid}: {len(got)} docs")
    got2 = set(snapshot_ids(out / "snapshots" / "20260102"))
    print(
        "snapshot 2 == new and changed docs:",
        got2 == days["expected2"],
        f"({len(days['expected2'])} expected)",
    )
    print("verify:", subprocess.run(refinery + ["verify", str(out)], cwd=ROOT).returncode)
    mon = json.loads((out / "snapshots" / "20260102" / "monitoring.json").read_text())
    print("drift:", json.dumps(mon["drift"]), "alerts:", [a["metric"] for a in mon["alerts"]])
    subprocess.run(
        [
            str(ROOT / "scripts" / "screenshot_report.sh"),
            str(out / "snapshots" / "20260102" / "report.html"),
            str(base / "report-20260102.png"),
        ],
        check=False,
    )
    return 0 if codes == [0, 3, 0] and got2 == days["expected2"] else 1


if __name__ == "__main__":
    sys.exit(main())
