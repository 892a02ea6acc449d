"""`python -m jobs.run --config X [--set k=v ...]`: the entry point `ray job submit` runs (same as `refinery run`)."""

from __future__ import annotations

import argparse
import sys

from jobs.errors import EXIT_OK, report, stop_signal
from refinery.redact import scrub


def run_from_args(args: argparse.Namespace) -> int:
    from jobs.cli import config_from_args

    try:
        cfg, path = config_from_args(args)
    except Exception as e:
        return report(e, [], "run")
    from jobs.pipeline import print_summary, run_pipeline
    from jobs.ray_backend import catch_stop_signals
    from jobs.ray_backend.cluster import shutdown

    committed: list[str] = []
    catch_stop_signals()
    try:
        result = run_pipeline(cfg, path, on_commit=committed.append, resume=not args.no_resume)
    except BaseException as e:
        if not isinstance(e, Exception) and stop_signal(e) is None:
            raise
        note = (
            f"run {committed[0]} had committed"
            if committed
            else "the run did not commit, so nothing of it is published (run it again to redo it)"
        )
        code = report(e, cfg.secrets(), "run", stop_note=note)
        if code >= 128:
            shutdown()
        return code
    print_summary(result)
    print(
        f"output: {result.output_uri}/data  (manifest: {result.output_uri}/manifest.json, "
        f"report: {result.output_uri}/report.json)"
    )
    if result.status == "committed" and cfg.monitoring.html_report:
        html = write_html_report(cfg, result)
        if html:
            print(f"html report: {html}")
    return EXIT_OK


def write_html_report(cfg, result) -> str | None:
    """The offline monitoring page of a committed run, beside report.json (outside data/, so `verify` ignores it).

    Best effort: the output is already committed, so a failure here is printed and never fails the run."""
    from refinery.location import Location
    from refinery.monitoring.profile import build_profile
    from refinery.monitoring.report_html import render

    so = cfg.output.storage_options
    try:
        profile = build_profile(result.output_uri, so, cfg.monitoring, result.run_id)
        inputs = [i.get("uri") for i in result.manifest.get("inputs", [])]
        page = render(result.run_id, profile, None, [], {"new_inputs": inputs}, kind="Run")
        target = Location(result.output_uri, so).join("report.html")
        target.write_bytes(page.encode())
        return target.uri
    except Exception as e:
        print(
            f"refinery: warning: no HTML report ({type(e).__name__}: {scrub(str(e), cfg.secrets())[:300]})",
            file=sys.stderr,
        )
        return None


def add_run_args(p: argparse.ArgumentParser) -> None:
    from jobs.cli import add_config_args

    add_config_args(p)
    p.add_argument("--no-resume", action="store_true",
                   help="start clean: discard what an interrupted run of this config on this input left")


def main(argv: list[str] | None = None) -> int:
    import logging

    from refinery.progress import show_progress

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    show_progress()
    parser = argparse.ArgumentParser(prog="python -m jobs.run")
    add_run_args(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
