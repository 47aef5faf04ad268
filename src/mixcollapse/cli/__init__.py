"""The ``mixcollapse`` command line: parsing only; every command calls the functions a user imports.

main      the entry point and its one error path (one line, exit code 2, for bad input)
run       train, analyze, demo
reproduce reproduce, sweep, report (the paper's figures and tables)
theory    the unconstrained features model (section 3)
"""

from mixcollapse.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
