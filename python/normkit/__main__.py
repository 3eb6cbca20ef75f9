"""Command line: ``python -m normkit bench [--quick] [--json PATH]``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="normkit", description="normkit command line")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="time normkit against NumPy and PyTorch (when installed)")
    b.add_argument("--quick", action="store_true", help="fewer repeats and small shapes only")
    b.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    b.add_argument("--ops", default=None, help="comma-separated subset of ops to run")
    sub.add_parser("config", help="print the build configuration")
    args = parser.parse_args(argv)
    if args.command == "bench":
        from .bench import run

        return run(quick=args.quick, json_path=args.json, ops=args.ops)
    from . import show_config

    show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
