"""The `wardflow` console script: one entry point, subcommands contributed by each package.

Each package exposes `register(subparsers)` in its `commands` module; heavy imports (torch,
faust) happen inside the command functions so `wardflow --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = ("streams.commands", "inference.commands", "allocator.commands", "streams.board.run",
                   "streams.gateway.commands")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wardflow",
        description="WardFlow: hospital events in, bed placements and pages out, within a second.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Every package's exceptions.py marks its error base with `user_facing = True`.
        if getattr(exc, "user_facing", False):
            print(f"wardflow {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
