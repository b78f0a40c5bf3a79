"""The ``bench`` command line, a thin layer over :mod:`bench.api`: one module per command
group (``run``, ``results``, ``info``, ``admin``), shared options in ``common``, the parser
and the mapping of errors to exit codes in ``app``."""

from bench.cli.app import build_parser, exit_code_table, main, one_line

__all__ = ["build_parser", "exit_code_table", "main", "one_line"]
