"""`mmer` command line: argparse wiring only. Each subcommand lives in `mmer.commands.<name>`.

Every error caused by the user is one line on stderr and a non-zero exit; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import typing

from mmer import __version__
from mmer.errors import MMERError


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line like every other error (argparse prints the usage block
    first); subcommand parsers inherit the class."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mmer",
        description="Multi-party multi-modal multi-label emotion recognition toolkit.",
    )
    parser.add_argument("--version", action="version", version=f"mmer {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import mmer.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"mmer.commands.{info.name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except MMERError as exc:
        if args.debug:
            raise
        print(f"mmer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (`mmer ... | head`): stop quietly, as shell tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 141
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
