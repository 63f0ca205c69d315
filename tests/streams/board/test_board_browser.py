"""The bed board in a real headless browser (Debian's chromium driven by Playwright), on the real broker.

An uncertain model placement shows on its unit as a held bed awaiting confirmation; a porter
(signed in, not a listed clinician) cannot act and the attempt is logged; a listed clinician
signs in and clicks Confirm; the override lands on `overrides` and the tile shows the patient
within two seconds on a second page kept open (server-sent events, no reload); no console errors;
a board restart rebuilds the same state. Screenshots of every page go to reports/board/ (or
$WARDFLOW_TEST_ARTIFACTS), with latency.json: the time from the decision to the tile changing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from streams.board.auth import PasswordStore
from streams.board.process import BoardProcess
from streams.devtools.broker import free_port
from streams.devtools.kafka_io import produce_all, read_until
from streams.devtools.runner import settings_env
from tests import events as ev
from tests.conftest import FIXTURES

REPO = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(420)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("WARDFLOW_TEST_ARTIFACTS", REPO / "reports" / "board"))
HID = "board-hosp"
PASSWORD = "correct horse battery staple"
SECRET = "board-test-session-secret-0123456789"


def _need_browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install .[dev])")


def _decisions(records) -> list[dict]:
    return [orjson.loads(r.value) for r in records if r.topic.endswith("decisions")]


def _in_thread(fn):
    """Run `fn` off this thread: Playwright's sync API keeps an event loop running on it."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result()


def _sign_in(page, base: str, user: str) -> None:
    page.goto(f"{base}/h/{HID}/")
    assert "/login" in page.url  # reading needs a sign-in by default
    page.fill("#user", user)
    page.fill("#password", PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{base}/h/{HID}/")


def test_board_in_a_browser(broker, run_id, start_worker, tmp_path):
    sync_api = _need_browser()
    from tests.inference_support import tiny_exported

    prefix = f"{run_id}."
    web_port = free_port()
    start_worker(model_path=tiny_exported() / "int8", allow_no_model=False, uncertainty_threshold=1.0,
                 hospital_config=FIXTURES / "board_hospital.yaml", web_port=web_port)
    store = PasswordStore(tmp_path / "users.json")
    store.set_password("dr-a", PASSWORD)
    store.set_password("porter-x", PASSWORD)  # may sign in and read; not a listed clinician
    audit_path = tmp_path / "audit.jsonl"
    env = settings_env(broker_url=broker.url, topic_prefix=prefix, hospital_config=FIXTURES / "board_hospital.yaml",
                       board_worker_views=f"http://127.0.0.1:{web_port}", board_password_file=tmp_path / "users.json",
                       board_session_secret=SECRET, board_audit_log=audit_path, board_views_poll_s=0.5)
    board = BoardProcess(env=env, port=free_port(), log_path=tmp_path / "board.log").start()
    base = board.url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console_errors: list[str] = []

    try:
        # Event time now: the board stamps an override with the wall clock (or the hospital clock if that is
        # ahead), and the worker lapses a hold 30 minutes of hospital time after the admission.
        topic, admission = ev.admission(HID, "P-1001", "E-1001", 0, sex="F", age=61, event_id="adm-1",
                                        text="crushing chest pain with st elevation")
        admission["occurred_at"] = datetime.now(UTC).isoformat()
        asyncio.run(produce_all(broker.bootstrap, [ev.encode(prefix, (topic, admission))]))
        records = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"],
                                         lambda rs: any(d["caused_by"] == "adm-1" for d in _decisions(rs)),
                                         timeout_s=90))
        caused = [d for d in _decisions(records) if d["caused_by"] == "adm-1"]
        # uncertainty_threshold 1.0: every prediction short of certainty asks a clinician
        assert caused and caused[0]["kind"] == "needs_confirmation", caused
        proposal = caused[0]
        bed, unit = proposal.get("bed_id"), proposal.get("unit")
        assert bed and unit, f"the uncertain prediction should hold a bed: {proposal}"
        tile = f"#bed-{bed}"

        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])

            def new_page(ctx):
                page = ctx.new_page()
                page.on("console", lambda m: console_errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
                page.on("pageerror", lambda e: console_errors.append(f"{page.url}: {e}"))
                return page

            # A porter signs in and reads, but cannot act: refused, logged, nothing published.
            porter_ctx = browser.new_context(viewport={"width": 1366, "height": 768})
            porter = new_page(porter_ctx)
            porter.goto(f"{base}/h/{HID}/")
            porter.screenshot(path=str(ARTIFACTS / "login.png"))
            _sign_in(porter, base, "porter-x")
            porter.goto(f"{base}/h/{HID}/units/{unit}")
            porter.wait_for_selector(f'{tile}[data-status="held"][data-patient="P-1001"]', timeout=5000)
            porter.click("#confirm-E-1001")
            porter.wait_for_url(f"{base}/h/{HID}/refused/unlisted")
            assert "not on this hospital's list" in porter.inner_text("main")
            porter.screenshot(path=str(ARTIFACTS / "refused.png"))
            porter_ctx.close()
            audit = [json.loads(line) for line in audit_path.read_text().splitlines()]
            assert any(a["who"] == "porter-x" and a["what"] == "confirm" and a["outcome"] == "refused_unlisted"
                       and a["decision_id"] == proposal["decision_id"] for a in audit), audit

            # A listed clinician: the admission is on its unit, held awaiting confirmation.
            ctx = browser.new_context(viewport={"width": 1366, "height": 768})
            page = new_page(ctx)
            _sign_in(page, base, "dr-a")
            page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)
            page.goto(f"{base}/h/{HID}/queue")
            page.wait_for_selector("#confirm-E-1001")
            page.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)
            page.goto(f"{base}/h/{HID}/units/{unit}")
            page.wait_for_selector(f'{tile}[data-status="held"][data-patient="P-1001"]', timeout=5000)
            page.screenshot(path=str(ARTIFACTS / "unit-held.png"), full_page=True)
            watcher = new_page(ctx)  # stays open: changes must arrive live, without a reload
            watcher.goto(f"{base}/h/{HID}/units/{unit}")
            watcher.wait_for_selector(f'{tile}[data-status="held"]')
            watcher.wait_for_function("document.body.dataset.connected === '1'", timeout=5000)

            clicked = time.time()
            page.focus("#confirm-E-1001")
            page.keyboard.press("Enter")  # keyboard-usable: the button is reachable and pressable
            watcher.wait_for_selector(f'{tile}[data-status="occupied"][data-patient="P-1001"]', timeout=2000)
            seen = time.time()
            # the clicking page follows its form's redirect and renders the unit again: a page load, not the
            # live update timed above, and on a loaded CI machine it can take longer than 2 s (fresh-clone CI,
            # 2026-12-07: the watcher saw the change in time, this page not within 2 s; alone it passed 3 of 3)
            page.wait_for_selector(f'{tile}[data-status="occupied"][data-patient="P-1001"]', timeout=10000)
            page.screenshot(path=str(ARTIFACTS / "unit-confirmed.png"), full_page=True)
            before = page.request.get(f"{base}/h/{HID}/state.json").json()

            # The override is on `overrides`, from the clinician only; its assignment is on `decisions`.
            out = _in_thread(lambda: asyncio.run(read_until(
                broker.bootstrap, [f"{prefix}overrides", f"{prefix}decisions"],
                lambda rs: any(d["kind"] == "assignment" for d in _decisions(rs)), timeout_s=10)))
            overrides = [orjson.loads(r.value) for r in out if r.topic.endswith("overrides")]
            assert [(o["decision_id"], o["action"], o["clinician_id"]) for o in overrides] == [
                (proposal["decision_id"], "confirm", "dr-a")]
            assignment = next(r for r in out if r.topic.endswith("decisions")
                              and orjson.loads(r.value)["kind"] == "assignment")
            assert orjson.loads(assignment.value)["bed_id"] == bed

            # A restart rebuilds the same board from the topic and the views.
            stopping = time.monotonic()
            board.stop()  # SIGTERM with browsers still following it live: must not wait on their streams
            assert time.monotonic() - stopping < 8, "the board did not stop promptly on SIGTERM"
            board = BoardProcess(env=env, port=board.port, log_path=tmp_path / "board2.log").start()
            after = page.request.get(f"{base}/h/{HID}/state.json").json()
            assert after == before
            page.goto(f"{base}/h/{HID}/units/{unit}")
            page.wait_for_selector(f'{tile}[data-status="occupied"][data-patient="P-1001"]', timeout=2000)
            page.screenshot(path=str(ARTIFACTS / "unit-after-restart.png"), full_page=True)
            browser.close()

        latency = {"click_to_tile_s": round(seen - clicked, 3),
                   "decision_to_tile_s": round(seen - assignment.timestamp_ms / 1000, 3)}
        (ARTIFACTS / "latency.json").write_text(json.dumps(latency, indent=1))
        print(f"board latency: {latency}; screenshots in {ARTIFACTS}")
        assert latency["decision_to_tile_s"] < 2.0
        assert console_errors == []
    finally:
        board.stop()
