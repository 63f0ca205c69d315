"""`wardflow simulate`: a seeded, realistic stream of one hospital's events, published at a compressed pace.

Kept apart from `streams.commands` so `wardflow --help` stays instant: the simulator, the
corpus and aiokafka are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import signal
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import IO, Any

from streams.exceptions import BrokerError, StreamsError
from streams.settings import add_settings_arguments, settings_from_args

DESCRIPTION = """\
Simulate the configured hospital (the demo hospital unless --hospital-config says otherwise)
and publish its events to the broker's input topics, time-compressed by --speed.

The day starts with about --initial-occupancy of the beds taken by patients admitted before
--start. Then the emergency department sees ~160 arrivals a day per 300 beds, fewest at
03-07h and most from late morning to evening; about a third are admitted, most with the
EHR's own bed request (requested_unit), which the worker places at once; the others wait for
a clinician and are placed by the simulated bed manager with a transfer. Patients go home
after a length of stay typical of their service, mostly in the daytime; vacated beds are
cleaned (cleaning, then clean); ICU patients step down to a ward; a few beds are blocked
for maintenance; about --malformed-rate of the messages are broken on purpose (bad JSON,
not UTF-8, a missing field, a wrong type, a naive timestamp, an unknown bed or hospital, a
discharge of someone never admitted) and should reach dead-letters.

The same --seed and --start give the same events byte for byte; event ids include both,
so a replay of the same run is ignored by the worker as duplicates, and a new --start (the
default is now, rounded down to the hour) gives new patients.
"""

EPILOG = """\
examples:
  wardflow simulate                               # one day in ~3 minutes to WARDFLOW_BROKER_URL
  wardflow simulate --days 2 --speed max --vitals # two days, as fast as the broker takes them
  wardflow simulate --dry-run --days 0.25 --output quarter-day.jsonl
  wardflow simulate --offline --paging-report --days 7 --start 2026-11-24T08:00:00+00:00
                                                  # paging against the truth: today's rules vs the old ones

--offline --paging-report runs the worker's own processing in memory (no broker) on the
simulated stretch, with vitals, in a closed loop in event time: the simulated clinicians read
each page a few minutes after it goes out and acknowledge it (a share, --ack-loss-rate, is
lost), and repeat a suspect set of observations when asked. It prints one JSON object on
stdout: pages and escalations per 100 occupied beds per day, deterioration recall, median
minutes to first page and page precision against the simulator's true deteriorations, and
the same figures for the rules before issue 13 under "legacy" (same seed, start and days).
Definitions: docs/paging.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `simulate` options, then every settings option (broker, topic prefix, hospital config)."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sim = parser.add_argument_group("simulation")
    sim.add_argument("--days", type=_positive_float, default=1.0, help="simulated days after --start (default 1)")
    sim.add_argument("--seed", type=int, default=7, help="random seed; same seed and start = same events (default 7)")
    sim.add_argument("--speed", type=_speed, default=480.0,
                     help="simulated seconds per wall second; 480 = a day in 3 minutes, 'max' = no pacing "
                          "(default 480)")
    sim.add_argument("--start", type=_start, default=None,
                     help="simulated start, RFC 3339 with an offset, e.g. 2026-11-24T08:00:00+00:00 "
                          "(default: --days before now, rounded down to the hour, UTC, so the simulated stretch ends "
                          "now: the worker refuses events dated ahead of their arrival at the broker)")
    sim.add_argument("--hospital", default=None, metavar="HOSPITAL_ID",
                     help="which hospital of the config file to simulate (default: the first)")
    sim.add_argument("--initial-occupancy", type=_fraction, default=0.85,
                     help="share of beds occupied at --start (default 0.85)")
    sim.add_argument("--requested-unit-rate", type=_fraction, default=0.85,
                     help="share of admitted patients whose admission carries the EHR's requested_unit (default 0.85)")
    sim.add_argument("--malformed-rate", type=_malformed_rate, default=0.01,
                     help="share of messages broken on purpose, to exercise dead-letters (default 0.01)")
    sim.add_argument("--arrivals-per-day", type=_positive_float, default=None,
                     help="mean ED arrivals per day (default: 0.53 per bed, ~160 for 300 beds)")
    sim.add_argument("--measurement-noise", type=_noise, default=1.0,
                     help="scale of the measurement noise on the simulated observations: 1 (default) the published "
                          "variation (streams/devtools/simulator.py: MEASUREMENT_SD), 0 exact readings of the true physiology")
    sim.add_argument("--vitals", action=argparse.BooleanOptionalAction, default=False,
                     help="also send observations: hourly for the sickest, some patients deteriorating "
                          "(default: off)")
    out = parser.add_argument_group("output")
    out.add_argument("--dry-run", action="store_true",
                     help="write the events as JSON lines (topic, key, value) instead of publishing")
    out.add_argument("--paging-report", action="store_true",
                     help="with --offline: no broker; run the worker in memory on the simulated stretch (with vitals, "
                          "simulated clinicians acknowledging pages in event time) and print the paging report (JSON) "
                          "on stdout: today's rules and the old ones (under 'legacy') over the same stretch")
    out.add_argument("--ack-loss-rate", type=_fraction, default=0.1,
                     help="with --offline: share of page acknowledgements that are lost (default 0.1)")
    out.add_argument("--output", metavar="FILE", default=None, help="with --dry-run: write here instead of stdout")
    add_settings_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Simulate, then publish (or write with --dry-run); a summary of counts goes to stderr."""
    from allocator.hospital import load_hospitals
    from streams.devtools.simulator import HospitalSimulator, utc_hour

    if args.paging_report and not getattr(args, "offline", False):
        raise StreamsError("--paging-report needs --offline (the report runs the worker in memory, no broker)")
    if args.paging_report and args.dry_run:
        raise StreamsError("--paging-report and --dry-run are alternatives: choose one")
    settings = settings_from_args(args)
    hospitals = load_hospitals(settings.hospital_config)
    if args.hospital is not None and args.hospital not in hospitals:
        raise StreamsError(f"--hospital {args.hospital!r} is not in {settings.hospital_config} "
                          f"(it has: {', '.join(hospitals)})")
    hospital = hospitals[args.hospital] if args.hospital else next(iter(hospitals.values()))
    start = args.start or utc_hour() - timedelta(days=args.days)
    until = start + timedelta(days=args.days)
    if args.paging_report:
        return _offline(args, settings, hospital, start)
    sim = HospitalSimulator(hospital, seed=args.seed, start=start, initial_occupancy=args.initial_occupancy,
                            requested_unit_rate=args.requested_unit_rate, malformed_rate=args.malformed_rate,
                            arrivals_per_day=args.arrivals_per_day, vitals=args.vitals,
                            measurement_noise=args.measurement_noise)
    events = sim.events(until)
    if args.dry_run:
        if args.output:
            with open(args.output, "wb") as fh:
                written = write_jsonl(events, fh, prefix=settings.topic_prefix)
        else:
            written = write_jsonl(events, sys.stdout.buffer, prefix=settings.topic_prefix)
            sys.stdout.flush()
        _summary({"written": written, "simulation": sim.stats().as_dict()})
        return 0
    report = asyncio.run(_publish(events, settings, start, until, args.speed))
    _summary({"published": report.as_dict(), "simulation": sim.stats().as_dict()})
    if report.failed:
        return 1
    return 130 if report.stopped else 0


def _offline(args: argparse.Namespace, settings: Any, hospital: Any, start: datetime) -> int:
    """The closed loop in memory, the paging report on stdout, the decisions by kind on stderr."""
    import logging

    import orjson
    from tqdm import tqdm

    from streams.devtools import paging_report

    clinical = settings.clinical_config()
    total = round(args.days * 24 * 60)
    # Broken messages (--malformed-rate) are counted in the summary, not logged one by one.
    logging.getLogger("streams.pipeline.processor").setLevel(logging.ERROR)
    bars: dict[str, Any] = {}

    def progress(label: str, at: datetime) -> None:
        bar = bars.get(label)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[label] = tqdm(total=total, unit="sim-min", file=sys.stderr, dynamic_ncols=True, disable=None,
                                     desc=label, bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}")
        minute = max(0, min(total, round((at - start).total_seconds() / 60)))
        if minute >= bar.n + 10 or minute == total:
            bar.n = minute
            bar.set_postfix_str(f"{at.astimezone(start.tzinfo):%a %H:%M} sim", refresh=True)

    try:
        current = paging_report.run(hospital, seed=args.seed, start=start, days=args.days, clinical=clinical,
                                    ack_loss_rate=args.ack_loss_rate, malformed_rate=args.malformed_rate,
                                    measurement_noise=args.measurement_noise,
                                    on_progress=lambda at: progress("chart rules", at))
        report = paging_report.report(hospital, seed=args.seed, start=start, days=args.days, clinical=clinical,
                                      ack_loss_rate=args.ack_loss_rate, malformed_rate=args.malformed_rate,
                                      current_run=current, on_progress=progress,
                                      measurement_noise=args.measurement_noise)
    finally:
        for bar in bars.values():
            bar.close()
    _summary({"offline": {"decisions": dict(sorted(current.kinds.items())),
                          "dead_letters": dict(sorted(current.dead_letters.items())),
                          "acks_sent": current.acks_sent, "acks_lost": current.acks_lost,
                          "repeat_observations": current.repeats,
                          "sets_asked_sooner": current.extra_sets}})
    sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()
    return 0


async def _publish(events: Iterator[Any], settings: Any, start: datetime, until: datetime, speed: float) -> Any:
    """Create the input topics if missing, then publish with a progress bar; Ctrl-C stops cleanly."""
    from tqdm import tqdm

    from streams.contract.models import INPUT_MODELS
    from streams.devtools.broker import create_topics
    from streams.devtools.sim_publish import publish
    from streams.worker.app import bootstrap_servers
    from streams.worker.kafka_security import client_options, warn_if_plaintext

    bootstrap = bootstrap_servers(settings.broker_url)
    config = client_options(settings)
    warn_if_plaintext(settings)
    if not settings.broker_username:  # with SASL the platform team owns topic creation
        try:
            await create_topics(bootstrap, [settings.topic(n) for n in INPUT_MODELS],
                                partitions=settings.topic_partitions, replicas=settings.topic_replicas, **config)
        except Exception as exc:
            raise BrokerError(f"cannot create the input topics on {bootstrap}: {exc}") from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    total_min = round((until - start).total_seconds() / 60)
    bar = tqdm(total=total_min, unit="sim-min", file=sys.stderr, dynamic_ncols=True, disable=None,
               desc="simulating", bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}")

    def progress(sent: int, at: datetime) -> None:
        bar.n = max(0, min(total_min, round((at - start).total_seconds() / 60)))
        bar.set_postfix_str(f"{at.astimezone(start.tzinfo):%a %H:%M} sim, {sent} sent", refresh=False)
        if sent % 50 == 0:
            bar.refresh()

    try:
        return await publish(events, bootstrap=bootstrap, prefix=settings.topic_prefix, speed=speed,
                             on_progress=progress, stop=stop, producer_config=config)
    finally:
        bar.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def write_jsonl(events: Iterable[Any], out: IO[bytes], *, prefix: str) -> int:
    """One line per message: full topic, key, the value exactly as it would be published.

    A JSON value is embedded as is (orjson.Fragment keeps its bytes); a broken one is kept
    as text, or base64 when it is not UTF-8; `malformed` names the defect of a broken one.
    """
    import orjson

    n = 0
    for event in events:
        line: dict[str, Any] = {"at": event.at.isoformat(), "topic": prefix + event.topic,
                                "key": event.key.decode("utf-8", "replace")}
        if event.malformed is None:
            line["value"] = orjson.Fragment(event.value)
        else:
            try:
                line["value_text"] = event.value.decode("utf-8")
            except UnicodeDecodeError:
                line["value_base64"] = base64.b64encode(event.value).decode("ascii")
            line["malformed"] = event.malformed
        out.write(orjson.dumps(line) + b"\n")
        n += 1
    return n


def _summary(data: dict[str, Any]) -> None:
    """Counts only (never a message's text), as one JSON line on stderr."""
    import orjson

    sys.stderr.write(orjson.dumps(data).decode() + "\n")


def _speed(value: str) -> float:
    if value.strip().lower() in ("max", "0"):
        return 0.0
    try:
        speed = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or 'max': {value!r}") from None
    if not speed > 0 or speed == float("inf"):
        raise argparse.ArgumentTypeError(f"must be positive or 'max', got {value!r}")
    return speed


def _start(value: str) -> datetime:
    try:
        start = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {value!r} (e.g. 2026-11-24T08:00:00+00:00)") from None
    if start.tzinfo is None:
        raise argparse.ArgumentTypeError(f"needs a UTC offset (e.g. {value}+00:00): a naive time is ambiguous")
    return start


def _noise(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0.0 <= number <= 5.0:
        raise argparse.ArgumentTypeError(f"must be between 0 (exact readings) and 5, got {value}")
    return number


def _fraction(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return x


def _malformed_rate(value: str) -> float:
    x = _fraction(value)
    if x > 0.5:
        raise argparse.ArgumentTypeError(f"at most 0.5 (half the messages broken), got {value}")
    return x


def _positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return x

