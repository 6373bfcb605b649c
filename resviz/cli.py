"""``python -m resviz``: the analyses from a shell. Errors are one sentence on stderr, exit code 2."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import resviz
from resviz import commands
from resviz.errors import ResvizError
from resviz.text import one_line


def _subcommands() -> list[ModuleType]:
    mods = [
        importlib.import_module(f"{commands.__name__}.{info.name}")
        for info in pkgutil.iter_modules(commands.__path__)
        if not info.name.startswith("_")  # helpers (_bounds), not subcommands
    ]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m resviz",
        description="Explore residual networks: model zoo, summaries, feature maps, gradients, attribution.",
    )
    parser.add_argument("--version", action="version", version=f"resviz {resviz.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for mod in _subcommands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # Building the parser imports every subcommand (and torch): Ctrl-C here is an interrupt too.
        args = build_parser().parse_args(argv)
        return int(args._run(args) or 0)
    except ResvizError as exc:
        # The sentence may quote a file name or a run title: no terminal escapes reach the screen.
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`python -m resviz gradflow --json | head`): stop quietly, and point
        # stdout at /dev/null so that the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
