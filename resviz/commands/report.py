"""``python -m resviz report``: the README's figures of the bundled demo group, from its files.

python -m resviz report                   # print them (markdown)
python -m resviz report --write README.md # put them between the README's report markers
python -m resviz report --check README.md # exit 1 when the README's copy differs
"""

from __future__ import annotations

import argparse
import sys

NAME = "report"
HELP = "Print the README's figures of the bundled demo group (or write/check them in the README)."
ORDER = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="README", help="replace the figures between the report markers")
    group.add_argument("--check", metavar="README", help="exit 1 when the README's figures differ")


def run(args: argparse.Namespace) -> int:
    from resviz.errors import ResvizError
    from resviz.report import BEGIN, readme_section, report_markdown, write_readme

    text = report_markdown()
    target = args.write or args.check
    if target is None:
        print(text, end="")
        return 0
    try:
        current = readme_section(target)
    except OSError as exc:
        raise ResvizError(f"Cannot read {target} ({exc.strerror}).") from exc
    if current is None:
        raise ResvizError(f"{target} has no {BEGIN} marker: add the two report markers where the figures go.")
    if args.check:
        if current != text:
            print(
                f"{target}'s figures differ from `python -m resviz report`: run it with --write.",
                file=sys.stderr,
            )
            return 1
        return 0
    write_readme(target, text)
    return 0
