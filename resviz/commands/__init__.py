"""One module per ``python -m resviz`` subcommand.

Each module defines ``NAME`` and ``HELP`` (str), ``ORDER`` (int, for --help), ``add_arguments(parser)``
and ``run(args) -> int``. :mod:`resviz.cli` discovers them; a new subcommand needs no other edit.
"""
