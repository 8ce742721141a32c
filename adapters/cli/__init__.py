"""The ``eventsrc`` command line: trade (demo on the embedded exchange, paper on a real one's
prices, live), and read what a run recorded (replay, verify, tail, show, stats, export, plot).

Errors are one clear line on stderr (exit status 2), never a traceback: bad arguments, the
trace's own errors, the file system's, and anything unexpected.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from adapters.cli import read, run, venues
from adapters.cli.common import CommandError
from eventsrc import EventsrcError


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="eventsrc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run.register(sub)
    read.register(sub)
    venues.register(sub)
    return parser


def _flat(text: str) -> str:
    """``text`` on one line."""
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `eventsrc tail ... | head`
        sys.stderr.close()
        return 0
    except CommandError as exc:
        print(f"eventsrc: error: {_flat(str(exc))}", file=sys.stderr)
        return exc.status
    except EventsrcError as exc:
        print(f"eventsrc: error: {_flat(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"eventsrc: error: {_flat(exc.strerror or str(exc))}{where}", file=sys.stderr)
        return 2
    except Exception as exc:
        what = _flat(f"{type(exc).__name__}: {exc}")
        print(f"eventsrc: error: unexpected {what} (a bug: please report it)", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
