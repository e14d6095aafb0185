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
    "device_load": "netassets.device_load.sample",
    "traffic": "netassets.traffic.sample",
    "perfsonar": "netassets.perfsonar.sample",
}

# pipeline -> (module with the landing scan, scan function, dynamic partitions name)
LANDING_SCANS = {
    "lens": ("netassets.lens.sensors", "scan_lens_root", "lens_regions"),
    "device_load": ("netassets.device_load.landing", "scan_partitions", "device_load_regions"),
    "dwcp": ("netassets.dwcp.schema", "scan_landing", "dwcp_regions"),
    "traffic": ("netassets.traffic.readers", "scan_landing", "traffic_sites"),
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

    register = commands.add_parser(
        "register", help="register the regions found in landing folders as dynamic partitions of $DAGSTER_HOME"
    )
    register.add_argument("pipelines", nargs="*", default=list(LANDING_SCANS), help="default: all")
    register.set_defaults(handler=register_landed_partitions)

    demo = commands.add_parser("demo", help="generate sample data for every pipeline and materialise it end to end")
    demo.add_argument("--home", help="NETASSETS_HOME to use (default: $NETASSETS_HOME or ~/.netassets)")
    demo.add_argument("pipelines", nargs="*", help="only these pipelines (default: all)")
    demo.set_defaults(handler=lambda args: importlib.import_module("netassets.demo").run(args))
    return parser


def register_landed_partitions(args: argparse.Namespace) -> None:
    """What the landing sensors do on their first tick, for CI and scripts without a daemon."""
    import dagster as dg

    from netassets.core.settings import safe_name

    with dg.DagsterInstance.get() as instance:
        for pipeline in args.pipelines:
            if pipeline not in LANDING_SCANS:
                raise ValueError(f"unknown pipeline {pipeline!r}; expected one of {sorted(LANDING_SCANS)}")
            module_name, scan_name, dynamic_name = LANDING_SCANS[pipeline]
            scan = getattr(importlib.import_module(module_name), scan_name)
            found = sorted({safe_name(other, "partition value") for _day, other in scan()})
            instance.add_dynamic_partitions(dynamic_name, found)
            print(f"{pipeline}: {dynamic_name} <- {', '.join(found) or '(nothing landed)'}")


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
