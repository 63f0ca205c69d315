"""Running a worker: topics, metrics endpoint, the effective-settings log line, Faust's Worker."""

from __future__ import annotations

import asyncio
import logging

import faust

from streams.settings import WardflowSettings
from streams.worker.app import bootstrap_servers, create_app, input_topic_names, output_topic_names
from streams.worker.kafka_security import client_options, warn_if_plaintext
from streams.worker.membership import claim_data_dir, leave_for, member_file, read_member
from streams.worker.topics import create_topics

log = logging.getLogger(__name__)


async def ensure_topics(settings: WardflowSettings) -> list[str]:
    """Create the contract topics if missing (production creates them up front; see deploy/)."""
    names = input_topic_names(settings) + output_topic_names(settings) + [settings.topic("ordered")]
    return await create_topics(bootstrap_servers(settings.broker_url), names,
                               partitions=settings.topic_partitions, replicas=settings.topic_replicas,
                               **client_options(settings))


async def replace_previous_member(settings: WardflowSettings) -> None:
    """Remove from the group the member this data directory last ran as, if it is still there (it was
    killed without leaving): the new worker then joins once instead of twice."""
    member = read_member(member_file(settings.data_dir))
    if member is None:
        return
    if member.group != settings.app_id:
        log.info("previous group member %s was of group %s, not %s: left alone", member.member_id, member.group,
                 settings.app_id)
        return
    outcome = await leave_for(member, bootstrap_servers(settings.broker_url), **client_options(settings))
    log.info("previous group member %s of %s: %s", member.member_id, member.group, outcome)


def run_worker(settings: WardflowSettings) -> int:
    """Blocks until the worker is stopped (SIGINT/SIGTERM)."""
    logging.getLogger().setLevel(settings.log_level.upper())
    settings.log_effective()
    warn_if_plaintext(settings)
    claim = claim_data_dir(settings.data_dir) if settings.replaces_previous_member else None  # held until exit
    # loads and validates the hospital config first: fail fast
    wapp = create_app(settings, note_member=claim is not None)
    created = asyncio.run(ensure_topics(settings))
    if created:
        log.info("created topics: %s", ", ".join(created))
    if claim is not None:
        asyncio.run(replace_previous_member(settings))
    wapp.metrics.serve(settings.metrics_port)
    if settings.metrics_port:
        log.info("metrics on http://0.0.0.0:%d/metrics", settings.metrics_port)
    worker = faust.Worker(wapp.app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
    return 0
