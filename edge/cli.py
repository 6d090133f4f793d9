"""`cccd-edge` command line: thin. Each area registers its subcommands from a module in ``edge.commands``.

A module there exposes ``register(subparsers)`` and sets ``func`` on its parsers; ``func(args) -> int`` returns the
exit code. Discovery keeps this file free of merge conflicts as areas grow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from edge import __version__, commands
from edge.errors import EdgeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cccd-edge", description="Read and verify Vietnamese chip ID cards.")
    parser.add_argument("--version", action="version", version=f"cccd-edge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (personal data stays masked)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from edge.logsetup import configure_logging

    configure_logging(verbose=args.verbose, stream=getattr(args, "log_stream", "stderr"),
                      level=getattr(args, "log_level", logging.WARNING))
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        code: int = func(args)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
