"""Two workers in one group on the real broker: one joins mid-stream, the other leaves on SIGTERM.

Nothing may be lost (every admission decided), nothing repeated with other bytes, SIGTERM must
end the worker cleanly (exit 0) within its stop timeout, and the pauses in decisions while the
group rebalances are printed (the figures go in the notes; speed lives in benchmarks, not here).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import orjson
import pytest
import yaml

from streams.devtools.kafka_io import read_until
from tests import events as ev
from tests.conftest import FIXTURES
from tests.streams.worker.test_crash_recovery import produce_paced

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(300)]

HOSPITALS = [f"h{i}" for i in range(8)]


def _hospitals_file(tmp_path: Path) -> Path:
    """Eight copies of the stream tests' hospital, so the load spreads over every partition."""
    template = yaml.safe_load((FIXTURES / "stream_hospital.yaml").read_text())["hospitals"][0]
    out = tmp_path / "hospitals.yaml"
    out.write_text(yaml.safe_dump({"hospitals": [{**template, "hospital_id": h, "name": f"Hospital {h}"}
                                                 for h in HOSPITALS]}))
    return out


def _stream(n_rounds: int) -> list[tuple[str, dict]]:
    """Per hospital and round: an admission, and the discharge of the patient admitted two rounds before."""
    items = []
    for r in range(n_rounds):
        for h in HOSPITALS:
            minute = r * 2
            unit = "MEDICINE" if r % 2 else "SURGERY"
            items.append(ev.admission(h, f"P{r}", f"E{r}", minute, requested_unit=unit, event_id=f"{h}-a{r}"))
            if r >= 2:
                items.append(ev.discharge(h, f"P{r - 2}", f"E{r - 2}", minute + 1, event_id=f"{h}-d{r - 2}"))
    return items


def _pauses(records, windows: list[tuple[str, float]]) -> dict[str, float]:
    """Longest gap between consecutive decisions (broker time) in the 20 s after each event."""
    times = sorted(r.timestamp_ms / 1000 for r in records)
    out = {}
    for name, at in windows:
        inside = [at] + [t for t in times if at <= t <= at + 20]
        nxt = [t for t in times if t > at + 20][:1]
        seq = inside + nxt
        out[name] = round(max(b - a for a, b in pairwise(seq)) if len(seq) > 1 else float("inf"), 2)
    return out


def _decisions(broker, prefix: str) -> list:
    return asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"], lambda r: True, 10, settle_s=0.3))


def _wait_decisions(broker, prefix: str, n: int) -> None:
    asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"], lambda r: len(r) >= n, 90))


def test_a_worker_joins_and_another_leaves_on_sigterm_with_nothing_lost(broker, run_id, start_worker, tmp_path):
    prefix = f"{run_id}."
    config = _hospitals_file(tmp_path)
    items = _stream(n_rounds=60)
    messages = [ev.encode(prefix, i) for i in items]
    common = dict(hospital_config=config, topic_partitions=4)
    a = start_worker(metrics_port=0, **common)
    producer = threading.Thread(target=lambda: asyncio.run(produce_paced(broker.bootstrap, messages, 40.0)),
                                daemon=True)
    producer.start()
    time.sleep(5)  # a stream under way: the scenario's schedule, not a wait for a condition
    joined_at = time.time()
    b = start_worker(metrics_port=0, data_dir=tmp_path / "worker-b-data", **common)  # each worker its own
    _wait_decisions(broker, prefix, len(_decisions(broker, prefix)) + 80)  # both share the stream a while
    left_at = time.time()
    stop_began = time.monotonic()
    code = a.stop(timeout_s=20)
    stop_s = time.monotonic() - stop_began
    assert code == 0, f"SIGTERM did not end the worker cleanly (exit {code}) within 20 s:\n{a.log_text()[-3000:]}"
    producer.join(timeout=120)
    admissions = {body["event_id"] for topic, body in items if topic == "admissions"}

    def all_decided(records) -> bool:
        return admissions <= {orjson.loads(r.value)["caused_by"] for r in records}

    records = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"], all_decided, 120, settle_s=2))
    assert b.running, "the remaining worker died"
    by_id: dict[str, set[bytes]] = defaultdict(set)
    for r in records:
        by_id[orjson.loads(r.value)["decision_id"]].add(r.value)
    decided = {orjson.loads(r.value)["caused_by"] for r in records}
    missing = sorted(admissions - decided)
    print(f"\n{len(messages)} events; SIGTERM -> exit {stop_s:.1f} s; longest pause in decisions: "
          f"{_pauses(records, [('join', joined_at), ('leave', left_at)])}")
    assert not missing, f"{len(missing)} admissions never decided, e.g. {missing[:5]}"
    changed = [i for i, v in by_id.items() if len(v) > 1]
    assert not changed, f"{len(changed)} decision ids repeated with other bytes"
    assert not [e for e in b.errors() if "Traceback" in e], b.errors()[:5]
