"""The board's web layer without Kafka: sign-in, who may act, CSRF, security headers, audit, proxy auth."""

from __future__ import annotations

import json
import re
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from allocator.hospital import load_hospitals
from streams.board.auth import PasswordStore, hash_password, verify_password
from streams.board.settings import BoardSettings
from streams.board.web import create_board_app
from tests.conftest import FIXTURES

HID = "board-hosp"
PASSWORD = "correct horse battery staple"
HOSPITALS = load_hospitals(FIXTURES / "board_hospital.yaml")


def make(tmp_path, **overrides):
    PasswordStore(tmp_path / "users.json").set_password("dr-a", PASSWORD)
    PasswordStore(tmp_path / "users.json").set_password("porter-x", PASSWORD)
    settings = BoardSettings(hospital_config=FIXTURES / "board_hospital.yaml", board_password_file=tmp_path / "users.json",
                             board_session_secret="s" * 32, board_audit_log=tmp_path / "audit.jsonl", **overrides)
    app = create_board_app(settings, HOSPITALS)  # no lifespan: the feed is not started, nothing reaches Kafka
    sent: list[tuple[str, dict]] = []

    async def publish(hid, body):
        sent.append((hid, body))

    app.state.feed.publish_override = publish
    app.state.feed.boards[HID].apply({
        "decision_id": "d1", "kind": "needs_confirmation", "hospital_id": HID, "created_at": "2030-01-01T08:00:00Z",
        "caused_by": "a1", "patient_id": "P1", "encounter_id": "E1", "unit": "CARD", "bed_id": "CARD-B1-A",
        "reasons": [{"code": "uncertain", "text": "Uncertain."}]})
    return TestClient(app, base_url="http://127.0.0.1:8080"), sent, tmp_path / "audit.jsonl"


def csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def sign_in(client, user: str, password: str = PASSWORD):
    page = client.get("/login")
    return client.post("/login", data={"csrf": csrf(page.text), "user": user, "password": password, "next": f"/h/{HID}/"},
                       follow_redirects=False)


def audit(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_passwords_are_salted_scrypt_hashes():
    stored = hash_password("a long enough password")
    assert stored.startswith("scrypt$") and "a long enough" not in stored
    assert stored != hash_password("a long enough password")  # salted
    assert verify_password("a long enough password", stored)
    assert not verify_password("a long enough passwore", stored)
    assert not verify_password("x", "plain-text")


def test_a_short_session_secret_is_refused_and_an_empty_one_means_unset():
    import argparse

    from streams.board.settings import BoardSettingsError, board_settings_from_args

    with pytest.raises(BoardSettingsError, match="board-session-secret: .*at least 32"):
        board_settings_from_args(argparse.Namespace(setting_board_session_secret="short"))
    assert board_settings_from_args(argparse.Namespace(setting_board_session_secret="")).board_session_secret is None


def test_reading_needs_a_sign_in_and_every_response_has_security_headers(tmp_path):
    client, _, _ = make(tmp_path)
    r = client.get(f"/h/{HID}/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert client.get("/events").status_code == 401
    assert client.get(f"/h/{HID}/state.json", follow_redirects=False).status_code == 303
    assert client.get("/healthz").status_code == 503  # not caught up: the feed never started here
    assert "wardflow_board_actions_total" in client.get("/metrics").text
    for path in ("/login", "/metrics", "/static/board.css"):
        h = client.get(path).headers
        assert "default-src 'self'" in h["content-security-policy"] and "frame-ancestors 'none'" in h["content-security-policy"]
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "same-origin"
    assert client.get("/login").headers["cache-control"] == "no-store"


def test_wrong_passwords_are_refused_logged_and_limited(tmp_path):
    client, _, audit_path = make(tmp_path)
    for _ in range(5):
        assert sign_in(client, "dr-a", "wrong password!!").status_code == 401
    assert sign_in(client, "dr-a").status_code == 401  # locked for a while after 5 failures, even when right
    assert [a["outcome"] for a in audit(audit_path)] == ["failed"] * 5
    assert sign_in(client, "nobody-here").status_code == 401


def test_only_listed_clinicians_may_act_and_every_attempt_is_logged(tmp_path):
    client, sent, audit_path = make(tmp_path)
    assert sign_in(client, "porter-x").status_code == 303
    page = client.get(f"/h/{HID}/queue")
    assert page.status_code == 200 and "Confirm CARD-B1-A" in page.text and "<textarea" not in page.text
    r = client.post(f"/h/{HID}/act", data={"csrf": csrf(page.text), "decision_id": "d1", "action": "confirm"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/h/{HID}/refused/unlisted"
    assert sent == []
    assert audit(audit_path)[-1] | {"at": None} == {
        "at": None, "who": "porter-x", "what": "confirm", "hospital": HID, "decision_id": "d1", "bed_id": None,
        "client": "testclient", "outcome": "refused_unlisted"}


def test_a_clinician_confirms_with_a_valid_form_only(tmp_path):
    client, sent, audit_path = make(tmp_path)
    assert sign_in(client, "dr-a").status_code == 303
    page = client.get(f"/h/{HID}/units/CARD")
    token = csrf(page.text)
    r = client.post(f"/h/{HID}/act", data={"csrf": "forged", "decision_id": "d1", "action": "confirm"})
    assert r.status_code == 403 and sent == []
    r = client.post(f"/h/{HID}/act", data={"csrf": token, "decision_id": "d1", "action": "confirm"},
                    headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and sent == []
    r = client.post(f"/h/{HID}/act", data={"csrf": token, "decision_id": "nope", "action": "confirm"},
                    follow_redirects=False)
    assert r.headers["location"] == f"/h/{HID}/refused/stale" and sent == []
    r = client.post(f"/h/{HID}/act", data={"csrf": token, "decision_id": "d1", "action": "reassign",
                                           "bed_id": "CARD-B1-A"}, follow_redirects=False)
    assert r.headers["location"] == f"/h/{HID}/refused/bed" and sent == []  # held, not available
    r = client.post(f"/h/{HID}/act", data={"csrf": token, "decision_id": "d1", "action": "confirm",
                                           "next": f"/h/{HID}/units/CARD"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/h/{HID}/units/CARD"
    [(hid, body)] = sent
    assert hid == HID and body["decision_id"] == "d1" and body["action"] == "confirm" and body["clinician_id"] == "dr-a"
    assert body["occurred_at"] >= "2030-01-01T08:00:00"  # never before the hospital clock
    assert body["reason"] == "Entered on the bed board." and "bed_id" not in body
    assert [a["outcome"] for a in audit(audit_path)] == ["ok", "refused_csrf", "refused_csrf", "refused_stale",
                                                          "invalid_bed", "published"]


def test_a_trusted_proxy_header_signs_in_and_an_untrusted_one_does_not(tmp_path):
    client, _, _ = make(tmp_path, board_auth="proxy", board_proxy_trusted="testclient")
    assert client.get(f"/h/{HID}/", headers={"X-Forwarded-User": "dr-b"}).status_code == 200
    assert client.get(f"/h/{HID}/").status_code == 401
    other, _, _ = make(tmp_path / "x", board_auth="proxy", board_proxy_trusted="10.0.0.5")
    assert other.get(f"/h/{HID}/", headers={"X-Forwarded-User": "dr-b"}).status_code == 401


@pytest.mark.parametrize("path", ["/h/nowhere/", f"/h/{HID}/units/NOPE", f"/h/{HID}/refused/whatever"])
def test_unknown_places_are_404(tmp_path, path):
    client, _, _ = make(tmp_path)
    sign_in(client, "dr-a")
    assert client.get(path).status_code == 404


def test_the_unit_page_lists_its_planned_elective_admissions(tmp_path):
    client, _, _ = make(tmp_path)
    app_board = client.app.state.feed.boards[HID]
    app_board.apply({"decision_id": "pl1", "kind": "planned_admission", "hospital_id": HID,
                     "created_at": "2029-12-30T09:00:00Z", "caused_by": "plan-x", "patient_id": "EL-7",
                     "unit": "ORTH", "reasons": [{"code": "planned_admission", "text": "Planned."}],
                     "details": {"plan_id": "plan-x", "day": 2, "date": "2030-01-03", "room": "ORTH-SR1",
                                 "theatre": "THEATRE-1", "surgeon": "mr-okafor", "length_of_stay": 4,
                                 "mandatory": True, "delay_days": 0}})
    assert sign_in(client, "dr-a").status_code == 303
    page = client.get(f"/h/{HID}/units/ORTH").text
    row = re.search(r'<tr id="plan-EL-7">(.*?)</tr>', page).group(1)
    assert all(x in row for x in ("2030-01-03", "EL-7", "(mandatory)", "ORTH-SR1", "THEATRE-1", "mr-okafor", "4 d",
                                  "planned"))
    assert "Planned elective admissions" in client.get(f"/h/{HID}/units/CARD").text
    assert "None planned." in client.get(f"/h/{HID}/units/CARD").text
    overview = client.get(f"/h/{HID}/").text
    assert "Planned electives" in overview
