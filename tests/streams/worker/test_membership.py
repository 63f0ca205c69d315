"""A restarted worker removes its killed incarnation from the group (streams.worker.membership)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from streams.worker.membership import (
    GroupMember,
    claim_data_dir,
    leave_for,
    member_file,
    read_member,
    write_member,
)
from streams.worker.topics import create_topics


def test_a_note_reads_back_what_was_written_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = member_file(tmp_path / "data")
    assert read_member(path) is None
    write_member(path, GroupMember("wardflow", "m-1"))
    write_member(path, GroupMember("wardflow", "m-2"))
    assert read_member(path) == GroupMember("wardflow", "m-2")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_data_directory_is_claimed_by_one_live_worker_at_a_time(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    first = claim_data_dir(tmp_path / "data")
    assert first is not None
    with caplog.at_level(logging.WARNING):
        assert claim_data_dir(tmp_path / "data") is None
    assert "in use by another running worker" in caplog.text
    first.close()  # what the kernel does when the holder dies
    again = claim_data_dir(tmp_path / "data")
    assert again is not None
    again.close()


@pytest.mark.parametrize("text", ["{not json", '{"group": "wardflow"}', '["wardflow", "m-1"]'])
def test_an_unreadable_note_is_ignored_loudly(tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture) -> None:
    path = member_file(tmp_path)
    path.write_text(text)
    with caplog.at_level(logging.WARNING):
        assert read_member(path) is None
    assert "unreadable group-member note" in caplog.text


def test_a_note_without_a_member_id_names_nobody(tmp_path: Path) -> None:
    path = member_file(tmp_path)
    path.write_text('{"group": "wardflow", "member_id": ""}')
    assert read_member(path) is None


async def _joined_member(bootstrap: str, topic: str, group: str) -> tuple[AIOKafkaConsumer, GroupMember]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, session_timeout_ms=30_000,
                                heartbeat_interval_ms=1_000)
    await consumer.start()
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    while not consumer.assignment():
        assert time.monotonic() < deadline, "the consumer never joined its group"
        await consumer.getmany(timeout_ms=200)
    return consumer, GroupMember(group, consumer._coordinator.member_id)


def test_the_coordinator_removes_a_noted_member(broker, run_id: str) -> None:
    async def scenario() -> tuple[str, str, str]:
        topic, group = f"{run_id}.t", f"{run_id}-group"
        await create_topics(broker.bootstrap, [topic], partitions=1)
        consumer, member = await _joined_member(broker.bootstrap, topic, group)
        try:
            first = await leave_for(member, broker.bootstrap)
            deadline = time.monotonic() + 30
            while consumer._coordinator.member_id == member.member_id:  # it learns it is out, and rejoins
                assert time.monotonic() < deadline, "the member was not removed from its group"
                await consumer.getmany(timeout_ms=200)
            again = await leave_for(member, broker.bootstrap)
            stranger = await leave_for(GroupMember(f"{run_id}-nobody", "m-0"), broker.bootstrap)
        finally:
            await consumer.stop()
        return first, again, stranger

    first, again, stranger = asyncio.run(scenario())
    assert first == "removed"
    # Kafka answers UNKNOWN_MEMBER_ID for a member that is not there; the embedded Tansu accepts it.
    assert again in ("removed", "already gone")
    assert stranger in ("removed", "already gone")


def test_an_unreachable_broker_is_reported_not_raised() -> None:
    outcome = asyncio.run(leave_for(GroupMember("g", "m"), "127.0.0.1:1", request_timeout_ms=2_000))
    assert outcome.startswith("not removed")


def test_a_worker_restarted_after_kill_9_replaces_its_dead_member_and_joins_once(start_worker, worker_env) -> None:
    first = start_worker()
    noted = read_member(member_file(Path(worker_env["WARDFLOW_DATA_DIR"])))
    assert noted is not None and noted.group == worker_env["WARDFLOW_APP_ID"]
    first.kill()
    second = start_worker()
    log = second.log_text()
    assert re.search(rf"previous group member {re.escape(noted.member_id)} of \S+: removed", log), log[-3000:]
    # Without the removal the dead member stays in the group until its session expires (6 s after the
    # kill) and the new worker joins a second time then; wait past that for a second join.
    deadline = time.monotonic() + 6.0 + 4.0
    while time.monotonic() < deadline:
        assert second.log_text().count("Joined group") == 1, second.log_text()[-3000:]
        time.sleep(0.2)
    assert second.running and not second.errors()
