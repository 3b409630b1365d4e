"""The ``esim`` command: one module per subcommand, ``main(argv) -> int`` so tests call it.

Expected errors (bad parameters, missing files, a structure that cannot be built) print one
line ``esim: error: ...`` to stderr and exit with status 2; so does a file system that refuses a
write (full disk, permissions).  ``--traceback`` shows the trace.
Only the CLI configures logging.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from esim.errors import EsimError

__all__ = ["main", "entry"]

# subcommand name -> module in esim.cli that defines add_arguments(parser) and run(args) -> int
SUBCOMMANDS = {
    "params": "esim.cli.params_cmd",
    "pack": "esim.cli.pack_cmd",
    "solve": "esim.cli.solve_cmd",
    "charge": "esim.cli.charge_cmd",
    "spm": "esim.cli.spm_cmd",
    "reproduce": "esim.cli.reproduce_cmd",
    "sweep": "esim.cli.sweep_cmd",
    "dataset": "esim.cli.dataset_cmd",
    "compare": "esim.cli.compare_cmd",
}


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and one line on usage errors, not the usage block
    before it (the subcommands' parsers are of this class too)."""

    def error(self, message: str):
        self.exit(2, f"esim: error: {message} (see {self.prog} -h)\n")

    def parse_args(self, args=None, namespace=None):
        # unknown options reach the top-level parser: name the subcommand's help, not esim's
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            cmd = getattr(ns, "command", None)
            self.exit(2, f"esim: error: unrecognized arguments: {' '.join(extras)} (see "
                         f"{self.prog}{' ' + cmd if cmd else ''} -h)\n")
        return ns


def build_parser() -> argparse.ArgumentParser:
    from esim import __version__

    p = _Parser(prog="esim", description="Electrical simulation of composite electrodes of "
                "sulfide all-solid-state batteries, with virtual SPM.")
    p.add_argument("--version", action="version", version=f"esim {__version__}")
    p.add_argument("--traceback", action="store_true", help="show the full trace of errors")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, modname in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:  # a stage not built yet in this checkout
            if exc.name != modname:
                raise
            continue
        sp = sub.add_parser(name, help=mod.HELP, description=mod.__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        # SUPPRESS: a flag given before the subcommand is not reset by the subparser's default
        sp.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
        sp.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars or logging")
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the esim CLI; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    from esim._progress import warnings_as_log_lines

    # Python warnings (numpy's RuntimeWarnings, say) as one log line each; -q silences them
    # (esim's own warnings still print)
    restore = warnings_as_log_lines(args.quiet)
    try:
        return _run(args)
    finally:
        restore()


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args._run(args) or 0)
    except EsimError as exc:
        if args.traceback:
            raise
        print(f"esim: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused (full disk, permissions): one line, too
        if args.traceback:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"esim: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("esim: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """Console-script entry point."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. ``esim ... | head``: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        status = 141  # 128 + SIGPIPE, as the shell reports it
    sys.exit(status)


if __name__ == "__main__":
    entry()
