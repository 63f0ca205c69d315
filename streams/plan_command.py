"""`wardflow plan`: the planner (`allocator.planning`), and for a hospital's electives the thin step
that turns the plan into `planned_admission` decisions and publishes them (or writes them as JSON
lines with `--out` / `--dry-run`, no broker needed).

The planning itself is pure and lives in the allocator (`allocator.commands.plan_hospital`);
this module only encodes with the contract and sends with the producer the simulator uses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from allocator.commands import PLAN_DESCRIPTION, add_plan_arguments, plan_hospital, run_plan_command
from allocator.exceptions import AllocatorError
from streams.contract.models import Decision, encode_output, utcnow
from streams.settings import add_settings_arguments, settings_from_args

__all__ = ["admission_decisions", "register", "run"]


def admission_decisions(hospital_id: str, plan_id: str, admissions: Sequence[Any], created_at: datetime) -> list[Decision]:
    """One `planned_admission` per admitted elective; ids are deterministic in (hospital, plan, position)."""
    from streams.state.decisions import DecisionLog

    log = DecisionLog(hospital_id, plan_id, created_at)
    for a in admissions:
        text = (f"Elective admission planned for {a.date.isoformat()} (day {a.day} of the plan) to room {a.room} on "
                f"{a.unit}, surgery in {a.theatre} with {a.surgeon}; {a.length_of_stay} day stay.")
        log.add("planned_admission", [("planned_admission", text)], patient_id=a.patient_id, unit=a.unit,
                details={"plan_id": plan_id, "day": a.day, "date": a.date.isoformat(), "room": a.room,
                         "theatre": a.theatre, "surgeon": a.surgeon, "length_of_stay": a.length_of_stay,
                         "mandatory": a.mandatory, "delay_days": a.delay_days})
    return log.decisions


async def _publish(settings: Any, hospital_id: str, decisions: Sequence[Decision]) -> int:
    from aiokafka import AIOKafkaProducer

    from streams.exceptions import BrokerError
    from streams.worker.app import bootstrap_servers
    from streams.worker.kafka_security import client_options, warn_if_plaintext
    from streams.worker.topics import create_topics

    bootstrap = bootstrap_servers(settings.broker_url)
    config = client_options(settings)
    warn_if_plaintext(settings)
    topic = settings.topic("decisions")
    try:
        if not settings.broker_username:  # with SASL the platform team owns topic creation
            await create_topics(bootstrap, [topic], partitions=settings.topic_partitions,
                                replicas=settings.topic_replicas, **config)
        key = hospital_id.encode()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **config)
        await producer.start()
        try:  # in order, each acknowledged by the broker before the command reports success
            sent = [await producer.send(topic, value=encode_output(d), key=key) for d in decisions]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        return len(sent)
    except BrokerError:
        raise
    except Exception as exc:
        raise BrokerError(f"cannot publish the plan to {topic} on {bootstrap}: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    if args.instance is not None:
        if getattr(args, "setting_hospital_config", None) is not None or args.dry_run or args.hospital:
            raise AllocatorError("--hospital-config, --hospital and --dry-run go with --electives, not --instance")
        return run_plan_command(args)
    settings = settings_from_args(args)
    out = Path(args.out) if args.out else None
    if out is not None and not out.parent.exists():
        raise AllocatorError(f"{out}: the folder {out.parent} does not exist")
    problem, admissions, summary = plan_hospital(args, settings.hospital_config)
    decisions = admission_decisions(problem.hospital_id, problem.plan_id, admissions, utcnow())
    lines = b"".join(encode_output(d) + b"\n" for d in decisions)
    report = sys.stdout
    if out is not None:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(lines)
        tmp.replace(out)
        summary["out"] = str(out)
    elif args.dry_run:
        sys.stdout.buffer.write(lines)
        sys.stdout.flush()
        report = sys.stderr
    else:
        summary["published"] = asyncio.run(_publish(settings, problem.hospital_id, decisions))
        summary["topic"] = settings.topic("decisions")
    summary["decisions"] = len(decisions)
    print(json.dumps(summary, indent=2), file=report)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="plan elective admissions, theatres and nurses (IHTC-2024, or the hospital's)",
                       description=PLAN_DESCRIPTION)
    add_plan_arguments(p)
    add_settings_arguments(p)
    p.set_defaults(func=run)
