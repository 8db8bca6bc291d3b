"""Registering an enterprise contact's address (``user_account.email`` through the users API) and
the intake's sender directory built from it."""

from __future__ import annotations

import uuid

import pytest

from service.mail_intake.service import SenderDirectory
from tests import factories as f


def test_admin_registers_an_address_the_intake_recognises(session, client, login):
    ent1 = f.user(session, "ent1")
    address = f"Contact-{uuid.uuid4().hex[:8]}@Example.com"
    resp = client.patch(f"/api/v1/users/{ent1.id}", json={"email": address}, headers=login("admin"))
    assert resp.status_code == 200 and resp.json()["email"] == address
    [contact] = SenderDirectory.load(session).lookup(address.lower())
    assert (contact.user_id, contact.enterprise_id) == (ent1.id, ent1.enterprise_id)
    ent1.is_active = False  # an inactive user is no contact
    session.flush()
    assert SenderDirectory.load(session).lookup(address) == []
    resp = client.patch(f"/api/v1/users/{ent1.id}", json={"email": None}, headers=login("admin"))
    assert resp.status_code == 200 and resp.json()["email"] is None


def test_a_new_user_with_an_address(session, client, login):
    name = f"mail{uuid.uuid4().hex[:8]}"
    resp = client.post("/api/v1/users", headers=login("admin"), json={
        "username": name, "full_name": "联系人", "password": "s3cret-pass", "role": "enterprise",
        "enterprise_id": f.enterprise_of(session, "ent2").id, "email": f"{name}@example.com"})
    assert resp.status_code == 201, resp.text
    [contact] = SenderDirectory.load(session).lookup(f"{name}@example.com")
    assert contact.enterprise_id == f.enterprise_of(session, "ent2").id


@pytest.mark.parametrize("email", ["no-at-sign", "a@b", "a b@example.com", "a@@example.com", "x" * 250 + "@e.com",
                                   "a\x00@example.com", 5])
def test_bad_address(session, client, login, email):
    ent1 = f.user(session, "ent1")
    resp = client.patch(f"/api/v1/users/{ent1.id}", json={"email": email}, headers=login("admin"))
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"].endswith("email"), resp.text
    session.expire_all()
    assert f.user(session, "ent1").email is None
