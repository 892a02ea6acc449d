"""`python -m jobs.run --config X [--set k=v ...]`: the entry point `ray job submit` runs (same as `refinery run`)."""

from __future__ import annotations

import argparse
import signal
import sys

from jobs.pipeline import DuplicateIdsError
from refinery.commit import OutputExistsError
from refinery.config import ConfigError
from refinery.fsio import StorageError
from refinery.redact import scrub


def run_from_args(args: argparse.Namespace) -> int:
    from jobs.cli import EXIT_CONFIG, EXIT_FAIL, EXIT_OK, config_from_args

    try:
        cfg, path = config_from_args(args)
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_CONFIG
    secrets = cfg.secrets()
    from jobs.pipeline import Stopped, catch_stop_signals, print_summary, run_pipeline

    progress: dict[str, str] = {}
    catch_stop_signals()
    try:
        result = run_pipeline(cfg, path, progress=progress)
    except (Stopped, KeyboardInterrupt, SystemExit) as e:
        if isinstance(e, SystemExit) and e.code != signal.SIGTERM:  # ray.init's own SIGTERM handler exits 15
            raise
        signum = getattr(e, "signum", signal.SIGTERM if isinstance(e, SystemExit) else signal.SIGINT)
        state = (f"run {progress['committed']} had committed" if "committed" in progress else
                 "the run did not commit, so nothing of it is published (run it again to redo it)")
        print(f"refinery: stopped by {signal.Signals(signum).name}; {state}", file=sys.stderr)
        _shutdown_ray()
        return 128 + int(signum)
    except Exception as e:
        cause = root_cause(e)
        if isinstance(cause, StorageError | OutputExistsError):
            print(f"refinery: error: {scrub(str(cause), secrets)}", file=sys.stderr)
            return EXIT_CONFIG
        text = scrub(str(cause), secrets)
        if isinstance(cause, DuplicateIdsError):  # an expected outcome, not a crash
            text = text.splitlines()[0] if text else ""
        print(f"refinery: run failed: {type(cause).__name__}: {text[:2000]}", file=sys.stderr)
        return EXIT_FAIL
    print_summary(result)
    print(f"output: {result.output_uri}/data  (manifest: {result.output_uri}/manifest.json, "
          f"report: {result.output_uri}/report.json)")
    if result.status == "committed" and cfg.monitoring.html_report:
        html = write_html_report(cfg, result)
        if html:
            print(f"html report: {html}")
    return EXIT_OK


def root_cause(e: BaseException) -> BaseException:
    """The exception a worker raised, out of Ray's wrappers (RayTaskError, UserCodeException), so the user sees
    one line about their file, not a remote traceback: the first of our own errors in the chain, else the
    innermost."""
    seen: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in seen and len(seen) < 20:
        seen.append(cur)
        if isinstance(cur, StorageError | OutputExistsError | DuplicateIdsError):
            return cur
        cur = getattr(cur, "cause", None) or cur.__cause__ or cur.__context__
    return seen[-1]


def _shutdown_ray() -> None:
    try:
        import ray

        ray.shutdown()
    except Exception:
        pass


def write_html_report(cfg, result) -> str | None:
    """The offline monitoring page of a committed run, beside report.json (outside data/, so `verify` ignores it).

    Best effort: the output is already committed, so a failure here is printed and never fails the run."""
    from refinery.fsio import get_fs, join, write_bytes
    from refinery.monitoring import build_profile
    from refinery.report_html import render

    so = cfg.output.storage_options
    try:
        profile = build_profile(result.output_uri, so, cfg.monitoring, result.run_id)
        inputs = [i.get("uri") for i in result.manifest.get("inputs", [])]
        page = render(result.run_id, profile, None, [], {"new_inputs": inputs}, kind="Run")
        uri = join(result.output_uri, "report.html")
        fs, path = get_fs(uri, so)
        write_bytes(fs, path, page.encode())
        return uri
    except Exception as e:
        print(f"refinery: warning: no HTML report ({type(e).__name__}: {scrub(str(e), cfg.secrets())[:300]})",
              file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import add_config_args

    parser = argparse.ArgumentParser(prog="python -m jobs.run")
    add_config_args(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
