"""Topic creation with the partition check the worker depends on (production code: the worker
creates its contract topics when missing; the embedded broker's users call it too)."""

from __future__ import annotations

from streams.exceptions import BrokerError


async def create_topics(bootstrap: str, names: list[str], partitions: int, replicas: int = 1,
                        **client: object) -> list[str]:
    """Create the topics that do not exist yet and check every one has `partitions` partitions.

    One hospital's events must land on the same partition number of every topic (the worker's
    tables and its event-time merge depend on it), so a topic created elsewhere with another
    partition count is refused with a message saying which and how to fix it.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            await admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=replicas) for n in missing])
        described = await admin.describe_topics(names)
        wrong = {t["topic"]: len(t["partitions"]) for t in described if len(t["partitions"]) != partitions}
        if wrong:
            listing = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
            raise BrokerError(f"topics must all have {partitions} partitions (setting topic_partitions) so that a "
                              f"hospital's events share a partition: {listing}; recreate them or change the setting")
        return missing
    finally:
        await admin.close()
