"""`netassets` command line: sample-data generators, partition registration and the demo.

    netassets generate lens --days 2 --regions chicago,ottawa --out DIR --seed 0
    netassets register [PIPELINE ...]
    netassets demo [PIPELINE ...]
    netassets up                 # the demo, then the Dagster UI on it until Ctrl-C

Every pipeline found in ``netassets/defs/`` gets its ``generate`` sub-command from its
``Pipeline.sample`` module (``add_arguments(parser)`` and ``generate(args)``).
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    # Imported here, inside main's handling of bad settings: the pipelines read theirs as they load.
    from netassets.pipelines import all_pipelines

    parser = argparse.ArgumentParser(prog="netassets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    names = [p.name for p in all_pipelines()]

    generate = commands.add_parser("generate", help="write sample raw data in the real layout")
    kinds = generate.add_subparsers(dest="pipeline", required=True)
    for described in all_pipelines():
        sub = kinds.add_parser(described.name, help=described.title,
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        described.sample.add_arguments(sub)
        sub.set_defaults(handler=described.sample.generate)

    register = commands.add_parser(
        "register", help="register the regions found in landing folders as dynamic partitions of $DAGSTER_HOME"
    )
    register.add_argument("pipelines", nargs="*", default=[], help=f"default: all of {', '.join(names)}")
    register.set_defaults(handler=register_landed_partitions)

    demo = commands.add_parser("demo", help="generate sample data for every pipeline and materialise it end to end")
    demo.add_argument("--home", help="NETASSETS_HOME to use (default: $NETASSETS_HOME or ~/.netassets)")
    demo.add_argument("pipelines", nargs="*", help=f"only these pipelines (default: all of {', '.join(names)})")
    demo.set_defaults(handler=lambda args: _demo_module().run(args))

    up = commands.add_parser("up", help="the demo's data and runs for every pipeline, then the Dagster UI on them "
                                        "(with perfSONAR's search server) until Ctrl-C",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    up.add_argument("--home", help="NETASSETS_HOME to use (default: $NETASSETS_HOME or ~/.netassets)")
    up.add_argument("--host", default="127.0.0.1", help="interface the UI listens on")
    up.add_argument("--port", type=int, default=0, help="UI port (0: a free one)")
    up.add_argument("--no-materialise", action="store_true", help="land and register the sample data only")
    up.set_defaults(handler=lambda args: _demo_module().up(args))
    return parser


def _demo_module():
    from netassets import demo  # dagster and the code location load only for the commands that need them

    return demo


def register_landed_partitions(args: argparse.Namespace) -> None:
    """What the landing sensors do on their first tick, for CI and scripts without a daemon."""
    import dagster as dg

    from netassets.pipelines import all_pipelines, pipeline

    chosen = [pipeline(name) for name in args.pipelines] or list(all_pipelines())
    with dg.DagsterInstance.get() as instance:
        for described in chosen:
            if described.landing_scan is None:
                print(f"{described.name}: {described.dynamic.name} come from its sensor (no landing folder)")
                continue
            found = described.register(instance)
            print(f"{described.name}: {described.dynamic.name} <- {', '.join(found) or '(nothing landed)'}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError) as exc:
        print(f"netassets: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # what the demo has started is stopped on the way out
        print("netassets: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
