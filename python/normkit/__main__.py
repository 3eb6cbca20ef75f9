"""Command line: ``python -m normkit bench [--quick] [--json PATH]``, ``python -m normkit demo
[--quick] [--json PATH] [--plots DIR | --no-plots] [--data FILE.npz]`` and ``python -m normkit config``
(also installed as the ``normkit`` console script)."""

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
    d = sub.add_parser("demo", help="train small NumPy networks on handwritten digits: what normalization and "
                       "regularization do, measured")
    d.add_argument("--quick", action="store_true", help="a few epochs of every run (seconds; for testing)")
    d.add_argument("--json", metavar="PATH", help="also write every number and learning curve as JSON")
    d.add_argument("--plots", metavar="DIR", default="normkit-demo",
                   help="directory for the learning-curve PNGs (default: ./normkit-demo; needs matplotlib)")
    d.add_argument("--no-plots", action="store_true", help="do not draw plots")
    d.add_argument("--data", metavar="FILE", help="an .npz with arrays X (samples first) and y (labels) to study "
                   "instead of scikit-learn's digits")
    d.add_argument("--threads", type=int, default=1, help="normkit and BLAS threads (default 1: the arrays are small)")
    sub.add_parser("config", help="print the build configuration")
    args = parser.parse_args(argv)
    if args.command == "bench":
        from .bench import run

        return run(quick=args.quick, json_path=args.json, ops=args.ops)
    if args.command == "demo":
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        from .demo import run as run_demo

        return run_demo(quick=args.quick, json_path=args.json, plots=None if args.no_plots else args.plots,
                        data=args.data, threads=args.threads)
    from . import show_config

    show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
