"""corpus-refinery core: schema, config, stage contract, accounting, I/O and the commit protocol."""

__version__ = "0.1.0"
