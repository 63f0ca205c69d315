"""The framework's own ceiling for bench/pipeline.py: a trivial stateful Faust agent.

One table increment per event (the event's key counted in a Faust table, so one changelog
record per event), nothing else: no decoding, no sequencing, no outputs. It runs in its own
process like the WardFlow worker, on the same broker, topics, partitions and Faust app class
(`streams.worker.faust_transport.tuned_app_class`, with the worker's fetch wait, commit interval and
group timeouts),
so the worker's ratio to it is the price of WardFlow's own work on top of Faust.

`--stages 2` puts a forwarding agent in front (each event sent on to an internal topic with
its key and partition; Faust acknowledges the original as the agent moves on), like the worker's
sequencer in front of its state agent: the ceiling of Faust with the worker's shape.

`--writes N` increments N keys per event (the event's key with a suffix), so N changelog records per
event: with `--stages 2 --writes 3` it has the worker's shape and about its changelog records per event
(bench/pipeline.py's `processing_in_process.changelog_records_per_event`), with none of its work.

Progress for the benchmark: `GET /processed/` on the Faust web port -> {"processed": n}.
Ready when Faust logs `Worker ready` (what `streams.devtools.runner.WorkerProcess` waits for).

    python bench/stateful_faust.py --broker-url kafka://127.0.0.1:9092 --app-id bench-x \
        --topics a,b --partitions 2 --web-port 6070 --datadir /tmp/x
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path (bench/hl7.py would shadow the
# python-hl7 package, bench/allocator.py the allocator package); put the repository root there.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import faust  # noqa: E402 - after bench/ is taken off sys.path

from streams.worker.faust_transport import tuned_app_class  # noqa: E402 - after bench/ is taken off sys.path


def build(args: argparse.Namespace) -> faust.App:
    app = tuned_app_class(args.fetch_max_wait_ms)(
        args.app_id,
        broker=args.broker_url,
        store="memory://",
        datadir=args.datadir,
        topic_partitions=args.partitions,
        broker_commit_interval=args.commit_interval_s,
        broker_session_timeout=args.session_timeout_s,
        broker_rebalance_timeout=args.rebalance_timeout_s,
        broker_heartbeat_interval=args.heartbeat_interval_s,
        web_enabled=True,
        web_port=args.web_port,
        web_bind="127.0.0.1",
        web_tables_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
    )
    raw: dict[str, Any] = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    source = app.topic(*args.topics.split(","), **raw)
    counts = app.Table(f"{args.app_id}-counts", default=int, partitions=args.partitions)
    processed = [0]
    if args.stages == 2:
        forwarded = app.topic(f"{args.app_id}-forwarded", partitions=args.partitions, internal=True, **raw)

        @app.agent(source, concurrency=1, name=f"{args.app_id}-forward")
        async def forward(stream: faust.StreamT) -> None:
            async for event in stream.events():
                m = event.message
                await forwarded.send(key=m.key, value=m.value, partition=m.partition)

        source = forwarded

    suffixes = [b""] + [b"/%d" % i for i in range(1, args.writes)]

    @app.agent(source, concurrency=1, name=f"{args.app_id}-count")
    async def count(stream: faust.StreamT) -> None:
        async for event in stream.events():
            key = event.message.key or b""
            for suffix in suffixes:
                counts[key + suffix] += 1
            processed[0] += 1

    @app.page("/processed/")
    async def processed_view(web: Any, request: Any) -> Any:
        return web.json({"processed": processed[0]})

    return app


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker-url", required=True)
    ap.add_argument("--app-id", required=True)
    ap.add_argument("--topics", required=True, help="comma-separated source topics")
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--web-port", type=int, required=True)
    ap.add_argument("--datadir", required=True)
    ap.add_argument("--fetch-max-wait-ms", type=int, required=True)
    ap.add_argument("--commit-interval-s", type=float, required=True)
    ap.add_argument("--session-timeout-s", type=float, required=True)
    ap.add_argument("--rebalance-timeout-s", type=float, required=True)
    ap.add_argument("--heartbeat-interval-s", type=float, required=True)
    ap.add_argument("--stages", type=int, choices=(1, 2), default=1,
                    help="1: count each event; 2: forward it to an internal topic first, then count (default 1)")
    ap.add_argument("--writes", type=int, default=1,
                    help="table increments (changelog records) per event, each to its own key (default 1)")
    args = ap.parse_args()
    if args.writes < 1:
        ap.error("--writes must be at least 1")
    logging.getLogger().setLevel(logging.INFO)
    worker = faust.Worker(build(args), loglevel="INFO", quiet=True)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
