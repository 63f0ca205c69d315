"""A restarted worker takes its previous incarnation's place in the consumer group at once.

A worker killed without leaving the group (kill -9, OOM, a lost container) stays a member until
its session times out. A dynamic member restarted in the meantime joins next to its own ghost,
gets half the partitions, and the group rebalances a second time when the ghost expires
(measured on the embedded broker: first decision 19.5 s after the kill, two joins). Static
membership avoids that but makes every planned stop wait for the session timeout.

So each worker notes its member id in its data directory whenever the group assigns it
partitions, and at start asks the group coordinator to remove that member (LeaveGroup, as a
clean shutdown would have done). A member that already left, or expired, is simply not there
(`UNKNOWN_MEMBER_ID`). The note is per data directory, which is per worker (a container, a pod
with its volume). A running worker holds a lock on its data directory (released by the kernel
when the process dies, kill -9 included); a worker that finds the lock held by a live one
neither notes nor removes a member, so it can never push a live worker out of the group.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaClient
from aiokafka import errors as kafka_errors
from aiokafka.protocol.group import LeaveGroupRequest

log = logging.getLogger(__name__)

MEMBER_FILE = "group-member.json"
LOCK_FILE = "worker.lock"
_GROUP_COORDINATOR = 0  # FindCoordinator key type for consumer groups


@dataclass(frozen=True, slots=True)
class GroupMember:
    group: str
    member_id: str


def member_file(data_dir: Path) -> Path:
    return Path(data_dir) / MEMBER_FILE


def claim_data_dir(data_dir: Path) -> IO[bytes] | None:
    """Lock `data_dir` for this process (keep the returned file open while the worker runs); None when a
    live process holds it already (logged)."""
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    handle = open(path / LOCK_FILE, "ab")  # noqa: SIM115 - held open for the worker's lifetime
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        log.warning("data directory %s is in use by another running worker: give each worker its own "
                    "(WARDFLOW_DATA_DIR); this one will not replace a previous group member", path)
        return None
    return handle


def write_member(path: Path, member: GroupMember) -> None:
    """Record `member` atomically (a crash mid-write leaves the previous note or none, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"group": member.group, "member_id": member.member_id}))
    os.replace(tmp, path)


def read_member(path: Path) -> GroupMember | None:
    """The member noted at `path`, or None when there is none or the note is unreadable (logged)."""
    try:
        raw = json.loads(path.read_text())
        member = GroupMember(group=str(raw["group"]), member_id=str(raw["member_id"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the unreadable group-member note %s: %s", path, exc)
        return None
    return member if member.group and member.member_id else None


async def leave_for(member: GroupMember, bootstrap: str | list[str], **client_options: Any) -> str:
    """Ask the group coordinator to remove `member`; returns what happened, in words. Never raises for
    a broker refusal: the worker then starts as it would have (the ghost expires with its session)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id="wardflow-restart", **client_options)
    try:
        await client.bootstrap()
        coordinator = await client.coordinator_lookup(_GROUP_COORDINATOR, member.group)
        response = await client.send(coordinator, LeaveGroupRequest(member.group, member.member_id))
        error = kafka_errors.for_code(response.error_code)
        if error is kafka_errors.NoError:
            return "removed"  # or was not there: some brokers (the embedded Tansu) accept any member id
        if error is kafka_errors.UnknownMemberIdError:
            return "already gone"
        return f"not removed ({error.__name__})"
    except kafka_errors.KafkaError as exc:
        return f"not removed ({type(exc).__name__}: {exc})"
    finally:
        await client.close()
