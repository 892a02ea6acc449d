"""`refinery` subcommands, one per module; each registers itself with `jobs.cli.command` when imported."""
