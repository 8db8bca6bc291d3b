"""Login hardening (issue 11, SPEC §9): throttled logins, constant-cost verification, tokens
revoked by a password or role change."""

from __future__ import annotations

import socket
import uuid

import pytest
from pwdlib import PasswordHash
from sqlmodel import select

from service.auth.login import LoginThrottle, login_throttle
from service.auth.throttle import Counter, Limit
from service.config import Settings, get_settings
from service.users.models import OfficerGrid, User
from tests import factories as f

PROBLEM = "application/problem+json"
TOKEN = "/api/v1/auth/token"


def _new_user(client, login, role: str = "officer", password: str = "first-pass-2026", **extra) -> dict:
    username = f"u{uuid.uuid4().hex[:12]}"
    body = {"username": username, "full_name": "测试用户", "password": password, "role": role, **extra}
    resp = client.post("/api/v1/users", json=body, headers=login("admin"))
    assert resp.status_code == 201, resp.text
    return {**resp.json(), "password": password}


def _token(client, username: str, password: str) -> dict[str, str]:
    resp = client.post(TOKEN, data={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


# ---- revocation -------------------------------------------------------------------------------

def test_password_change_revokes_earlier_tokens(client, login):
    user = _new_user(client, login)
    old = _token(client, user["username"], user["password"])
    assert client.get("/api/v1/me", headers=old).status_code == 200
    resp = client.patch(f"/api/v1/users/{user['id']}", json={"password": "second-pass-2026"}, headers=login("admin"))
    assert resp.status_code == 200, resp.text
    refused = client.get("/api/v1/me", headers=old)
    assert refused.status_code == 401 and refused.headers["content-type"] == PROBLEM
    assert "重新登录" in refused.json()["detail"]
    new = _token(client, user["username"], "second-pass-2026")
    assert client.get("/api/v1/me", headers=new).json()["username"] == user["username"]


def test_other_changes_keep_tokens(client, login):
    user = _new_user(client, login)
    token = _token(client, user["username"], user["password"])
    resp = client.patch(f"/api/v1/users/{user['id']}", json={"full_name": "改名", "phone": "13900000001"},
                        headers=login("admin"))
    assert resp.status_code == 200, resp.text
    assert client.get("/api/v1/me", headers=token).json()["full_name"] == "改名"


def test_role_change_revokes_earlier_tokens(session, client, login):
    user = _new_user(client, login, role="officer", grid_ids=[session.exec(select(OfficerGrid.grid_id)).first()])
    old = _token(client, user["username"], user["password"])
    assert client.get("/api/v1/me", headers=old).json()["role"] == "officer"
    dept = f.department(session, "SFJ").id
    resp = client.put(f"/api/v1/users/{user['id']}/role", json={"role": "department", "department_id": dept},
                      headers=login("admin"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["role"] == "department" and resp.json()["department_id"] == dept
    assert client.get("/api/v1/me", headers=old).status_code == 401
    assert session.exec(select(OfficerGrid).where(OfficerGrid.officer_id == user["id"])).first() is None
    new = _token(client, user["username"], user["password"])
    assert client.get("/api/v1/me", headers=new).json()["role"] == "department"


def test_same_role_keeps_tokens(session, client, login):
    user = _new_user(client, login, role="supervisor")
    token = _token(client, user["username"], user["password"])
    region = session.exec(select(User.region_id).where(User.region_id.is_not(None))).first()
    resp = client.put(f"/api/v1/users/{user['id']}/role", json={"role": "supervisor", "region_id": region},
                      headers=login("admin"))
    assert resp.status_code == 200 and resp.json()["region_id"] == region
    assert client.get("/api/v1/me", headers=token).status_code == 200


@pytest.mark.parametrize(("body", "field"), [
    ({"role": "enterprise"}, "enterprise_id"),
    ({"role": "department"}, "department_id"),
    ({"role": "department", "department_id": 2**31 - 1}, "department_id"),
    ({"role": "department", "department_id": 2**31}, "department_id"),
    ({"role": "king"}, "role"),
    ({"role": None}, "role"),
    ({}, "role"),
    ({"role": "admin", "grid_ids": [1]}, "grid_ids"),
    ({"role": "supervisor", "region_id": 0}, "region_id"),
])
def test_role_change_bad_input(client, login, body, field):
    user = _new_user(client, login)
    token = _token(client, user["username"], user["password"])
    resp = client.put(f"/api/v1/users/{user['id']}/role", json=body, headers=login("admin"))
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == PROBLEM
    assert field in {e["field"] for e in resp.json()["errors"]}
    # nothing changed: the user's token still works, with the old role
    assert client.get("/api/v1/me", headers=token).json()["role"] == "officer"


def test_role_change_refused_to_non_admins_and_unknown_users(client, login):
    user = _new_user(client, login)
    resp = client.put(f"/api/v1/users/{user['id']}/role", json={"role": "admin"}, headers=login("officer1"))
    assert resp.status_code == 403
    for missing in (2**31 - 1, 2**40):
        resp = client.put(f"/api/v1/users/{missing}/role", json={"role": "admin"}, headers=login("admin"))
        assert resp.status_code == 404, resp.text


# ---- throttling -------------------------------------------------------------------------------

def _attempts(client, username: str, password: str, n: int) -> list:
    return [client.post(TOKEN, data={"username": username, "password": password}) for _ in range(n)]


def test_account_locked_after_five_attempts_even_with_the_right_password(client, login):
    user = _new_user(client, login)
    assert [r.status_code for r in _attempts(client, user["username"], "wrong-pass-1", 5)] == [401] * 5
    refused = client.post(TOKEN, data={"username": user["username"], "password": user["password"]})
    assert refused.status_code == 429 and refused.headers["content-type"] == PROBLEM
    body = refused.json()
    assert body["status"] == 429 and body["type"] == "/problems/too-many-requests" and "分钟后再试" in body["detail"]
    retry = int(refused.headers["Retry-After"])
    assert 0 < retry <= get_settings().login_failure_window_seconds and body["retry_after"] == retry


def test_unknown_account_answers_alike(client, login):
    real = _new_user(client, login)
    ghost = f"ghost{uuid.uuid4().hex[:10]}"
    answers = []
    for name in (real["username"], ghost):
        codes = [r.status_code for r in _attempts(client, name, "wrong-pass-1", 6)]
        assert codes == [401] * 5 + [429], name
        last = client.post(TOKEN, data={"username": name, "password": "wrong-pass-1"})
        answers.append((last.status_code, last.json()["title"], last.json()["detail"]))
    assert answers[0] == answers[1]


def test_success_resets_the_account_count(client, login):
    user = _new_user(client, login)
    assert {r.status_code for r in _attempts(client, user["username"], "wrong-pass-1", 4)} == {401}
    _token(client, user["username"], user["password"])
    assert {r.status_code for r in _attempts(client, user["username"], "wrong-pass-1", 4)} == {401}
    _token(client, user["username"], user["password"])


def test_failures_from_one_address_are_throttled(client, login, monkeypatch):
    monkeypatch.setenv("QIFU_LOGIN_FAILURES_PER_ADDRESS", "3")
    get_settings.cache_clear()
    login_throttle.cache_clear()
    try:
        names = [f"ghost{uuid.uuid4().hex[:10]}" for _ in range(4)]
        codes = [client.post(TOKEN, data={"username": n, "password": "wrong-pass-1"}).status_code for n in names]
        assert codes == [401, 401, 401, 429]
    finally:
        monkeypatch.delenv("QIFU_LOGIN_FAILURES_PER_ADDRESS")
        get_settings.cache_clear()
        login_throttle.cache_clear()


@pytest.mark.parametrize(("name", "value"), [("login_failures_per_account", 0), ("login_failure_window_seconds", 0),
                                             ("requests_per_user_per_minute", -1), ("max_body_bytes", 10)])
def test_throttle_settings_refuse_nonsense(name, value):
    with pytest.raises(ValueError, match=name):
        Settings(**{name: value})


def _redis_counter(url: str = "redis://127.0.0.1:6379/15") -> Counter:
    return Counter(url, key_prefix=f"qifu-test-{uuid.uuid4().hex}")


def test_counts_on_redis_are_shared_between_processes():
    """Two counters on one Redis (two API processes) see one count."""
    first = _redis_counter()
    second = Counter(first.storage_url, key_prefix=first._shared.storage.key_prefix)
    limit = Limit("login-account", 3, 60)
    assert [first.hit(limit, "k"), second.hit(limit, "k"), first.hit(limit, "k")] == [True] * 3
    assert not second.hit(limit, "k") and not second.allows(limit, "k")
    assert 55 <= second.retry_after(limit, "k") <= 60
    first.clear(limit, "k")
    assert second.allows(limit, "k")


def test_throttle_counts_in_memory_while_redis_is_down(caplog):
    """Redis unreachable: logins are still answered and still throttled (in this process)."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    throttle = LoginThrottle(Settings(login_failures_per_account=2),
                             Counter(f"redis://127.0.0.1:{port}/0", key_prefix=uuid.uuid4().hex))
    throttle.start("someone", "10.0.0.1")
    throttle.failed("10.0.0.1")
    throttle.start("someone", "10.0.0.1")
    with pytest.raises(Exception) as refused:
        throttle.start("someone", "10.0.0.1")
    assert refused.value.status == 429 and refused.value.retry_after >= 1
    assert "counting in process memory" in caplog.text
    throttle.succeeded("someone")
    throttle.start("someone", "10.0.0.1")


# ---- constant cost ----------------------------------------------------------------------------

def test_every_failed_login_verifies_one_argon2_hash(session, client, login, monkeypatch):
    """Unknown, inactive and real users all cost one Argon2 verification (no timing oracle)."""
    calls: list[str] = []
    verify = PasswordHash.verify

    def counted(self, password, hash, *args, **kwargs):  # noqa: A002 - pwdlib's name
        calls.append(hash)
        return verify(self, password, hash, *args, **kwargs)

    monkeypatch.setattr(PasswordHash, "verify", counted)
    active = _new_user(client, login)
    inactive = _new_user(client, login)
    client.patch(f"/api/v1/users/{inactive['id']}", json={"is_active": False}, headers=login("admin"))
    for name in (active["username"], inactive["username"], f"ghost{uuid.uuid4().hex[:10]}"):
        calls.clear()
        assert client.post(TOKEN, data={"username": name, "password": "wrong-pass-1"}).status_code == 401
        assert len(calls) == 1 and calls[0].startswith("$argon2id$"), name


# ---- per-user request limit -------------------------------------------------------------------

def test_requests_per_user_are_limited(client, login, monkeypatch):
    monkeypatch.setenv("QIFU_REQUESTS_PER_USER_PER_MINUTE", "3")
    get_settings.cache_clear()
    try:
        ent, officer = login("ent1"), login("officer1")
        codes = [client.get("/api/v1/me", headers=ent).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = client.get("/api/v1/me", headers=ent)
        assert refused.headers["content-type"] == PROBLEM and 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "每分钟最多 3 次" in refused.json()["detail"]
        assert client.get("/api/v1/me", headers=officer).status_code == 200  # per user
        monkeypatch.setenv("QIFU_REQUESTS_PER_USER_PER_MINUTE", "0")  # off
        get_settings.cache_clear()
        assert {client.get("/api/v1/me", headers=ent).status_code for _ in range(5)} == {200}
    finally:
        monkeypatch.delenv("QIFU_REQUESTS_PER_USER_PER_MINUTE")
        get_settings.cache_clear()
