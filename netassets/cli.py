"""`netassets` command line: sample-data generators and the one-command demo.

    netassets generate lens --days 2 --regions chicago,ottawa --out DIR --seed 0
    netassets demo

Each pipeline's ``sample.py`` provides ``add_arguments(parser)`` and ``generate(args)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

GENERATORS = {
    "lens": "netassets.lens.sample",
    "dwcp": "netassets.dwcp.sample",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netassets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="write sample raw data in the real layout")
    kinds = generate.add_subparsers(dest="pipeline", required=True)
    for pipeline, module_name in GENERATORS.items():
        module = importlib.import_module(module_name)
        sub = kinds.add_parser(pipeline, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(handler=module.generate)

    demo = commands.add_parser("demo", help="generate sample data for every pipeline and materialise it end to end")
    demo.add_argument("--home", help="NETASSETS_HOME to use (default: $NETASSETS_HOME or ~/.netassets)")
    demo.set_defaults(handler=lambda args: importlib.import_module("netassets.demo").run(args))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"netassets: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
