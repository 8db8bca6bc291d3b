"""The attachment API (issue 12) on PostgreSQL: upload, list, download with its headers, the
ticket's count and history, type and size refusals naming the field, row scope (404), roles (403),
dedup, bad input, and the upload route's own body limit."""

from __future__ import annotations

import hashlib
from urllib.parse import quote

import pytest
from sqlmodel import func, select

from service.config import get_settings
from service.tickets.models import Attachment
from tests import factories as f
from tests.attachments import samples as s
from tests.attachments.conftest import blobs

API = "/api/v1"
PROBLEM = "application/problem+json"


def upload(client, headers, number, *files, data=None):
    parts = [("files", item) for item in files]
    return client.post(f"{API}/tickets/{number}/attachments", files=parts or None, data=data, headers=headers)


def problem(resp, status: int, field: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


def n_attachments(session, ticket) -> int:
    return session.exec(select(func.count()).select_from(Attachment).where(Attachment.ticket_id == ticket.id)).one()


def test_upload_list_download(session, client, login, store_dir):
    ticket = f.make_ticket(session, "dispatched")
    ent = login("ent1")
    photo, report = s.png(), s.ooxml("word")
    resp = upload(client, ent, ticket.number, ("厂区 照片.png", photo, "image/png"),
                  ("情况说明.docx", report, "application/octet-stream"), data={"note": "现场照片和说明"})
    assert resp.status_code == 201, resp.text
    items = resp.json()
    assert [(i["filename"], i["content_type"], i["size"]) for i in items] == [
        ("厂区 照片.png", "image/png", len(photo)),
        ("情况说明.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", len(report))]
    assert items[0]["sha256"] == hashlib.sha256(photo).hexdigest() and items[0]["ticket_number"] == ticket.number
    assert "storage_key" not in items[0]
    # the ticket counts them and its history shows them
    read = client.get(f"{API}/tickets/{ticket.number}", headers=ent).json()
    assert read["attachment_count"] == 2
    events = [e for e in client.get(f"{API}/tickets/{ticket.number}/events", headers=ent).json()
              if e["action"] == "attach"]
    assert [e["payload"]["attachment_id"] for e in events] == [i["id"] for i in items]
    assert all(e["reason"] == "现场照片和说明" for e in events)
    # listed for the insiders
    for who in ("ent1", "officer1", "supervisor1", "admin"):
        listed = client.get(f"{API}/tickets/{ticket.number}/attachments", headers=login(who))
        assert [i["id"] for i in listed.json()] == [i["id"] for i in items], who
    # downloaded with the detected type, as an attachment, never sniffed or run
    resp = client.get(items[0]["url"], headers=ent)
    assert resp.status_code == 200 and resp.content == photo
    assert resp.headers["content-type"] == "image/png"
    assert resp.headers["content-disposition"] == (
        "attachment; filename=\"__ __.png\"; filename*=UTF-8''" + quote("厂区 照片.png", safe=""))
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["content-security-policy"].startswith("sandbox")
    assert resp.headers["etag"] == f'"{items[0]["sha256"]}"'
    assert len(blobs(store_dir)) == 2


def test_type_is_detected_on_the_bytes(session, client, login, store_dir):
    ticket = f.make_ticket(session, "submitted")
    ent = login("ent1")
    resp = upload(client, ent, ticket.number, ("发票.pdf", s.png(seed=3), "application/pdf"))
    assert resp.status_code == 201, resp.text
    assert resp.json()[0]["content_type"] == "image/png" and resp.json()[0]["filename"] == "发票.pdf.png"
    for name, data in (("photo.jpg", s.EXE), ("photo.jpg", s.ELF), ("photo.jpg", s.HTML), ("logo.png", s.SVG),
                       ("report.docx", s.zip_archive()), ("report.docm", s.ooxml("word_macro"))):
        resp = upload(client, ent, ticket.number, ("ok.gif", s.gif(), "image/gif"), (name, data, "image/jpeg"))
        body = problem(resp, 415, "files[1]")
        assert body["type"] == "/problems/unsupported-file-type", name
    # nothing of the refused requests was kept (the GIF beside them neither)
    assert n_attachments(session, ticket) == 1 and len(blobs(store_dir)) == 1


def test_oversize_file_is_413_naming_it(session, client, login, store_dir, monkeypatch):
    monkeypatch.setattr(get_settings(), "attachment_max_bytes", 4096)
    ticket = f.make_ticket(session, "submitted")
    resp = upload(client, login("ent1"), ticket.number, ("a.png", s.png(), "image/png"),
                  ("big.pdf", s.pdf() + b"%" * 5000, "application/pdf"))
    body = problem(resp, 413, "files[1]")
    assert body["type"] == "/problems/file-too-large"
    assert n_attachments(session, ticket) == 0 and blobs(store_dir) == []


def test_upload_route_has_its_own_body_limit(session, client, login, store_dir):
    """Above the global 1 MiB limit the upload route still takes a file (its limit is larger);
    other routes still refuse such a body."""
    assert get_settings().attachment_max_request_bytes > get_settings().max_body_bytes
    ticket = f.make_ticket(session, "submitted")
    big = s.pdf() + b"%" * (get_settings().max_body_bytes + 1024)
    resp = upload(client, login("ent1"), ticket.number, ("大文件.pdf", big, "application/pdf"))
    assert resp.status_code == 201, resp.text[:300]
    assert resp.json()[0]["size"] == len(big)
    resp = client.post(f"{API}/tickets/{ticket.number}/comment", content=b" " * len(big),
                       headers={"Content-Type": "application/json", **login("ent1")})
    assert problem(resp, 413)["type"] == "/problems/body-too-large"


def test_request_above_the_upload_limit_is_refused_before_it_is_read(session, client, login, store_dir):
    ticket = f.make_ticket(session, "submitted")
    size = get_settings().attachment_max_request_bytes + 1
    resp = client.post(f"{API}/tickets/{ticket.number}/attachments", content=b"x" * size,
                       headers={"Content-Type": "multipart/form-data; boundary=x", **login("ent1")})
    assert problem(resp, 413)["type"] == "/problems/body-too-large"


def test_same_file_twice_is_one_attachment(session, client, login, store_dir):
    ticket = f.make_ticket(session, "submitted")
    first = upload(client, login("ent1"), ticket.number, ("a.pdf", s.pdf(), "application/pdf")).json()
    again = upload(client, login("officer1"), ticket.number, ("b.pdf", s.pdf(), "application/pdf")).json()
    assert first[0]["id"] == again[0]["id"] and n_attachments(session, ticket) == 1
    assert f.reload(session, ticket).attachment_count == 1 and len(blobs(store_dir)) == 1


@pytest.mark.parametrize("who", ["ent2", "officer12", "supervisor2"])
def test_out_of_scope_is_404_and_writes_nothing(session, client, login, store_dir, who):
    ticket = f.make_ticket(session, "dispatched")
    att = upload(client, login("ent1"), ticket.number, ("a.png", s.png(), "image/png")).json()[0]
    version = f.reload(session, ticket).version
    headers = login(who)
    problem(client.get(f"{API}/tickets/{ticket.number}/attachments", headers=headers), 404)
    problem(client.get(att["url"], headers=headers), 404)
    problem(upload(client, headers, ticket.number, ("b.gif", s.gif(), "image/gif")), 404)
    assert n_attachments(session, ticket) == 1 and f.reload(session, ticket).version == version


def test_roles_that_may_not_attach_get_403(session, client, login, store_dir):
    ticket = f.make_ticket(session, "dispatched")
    for who in ("supervisor1", "admin"):
        body = problem(upload(client, login(who), ticket.number, ("a.png", s.png(), "image/png")), 403)
        assert "attach" in body["detail"]
    assert n_attachments(session, ticket) == 0


def test_department_handling_the_ticket_may_attach(session, client, login, store_dir):
    ticket = f.make_ticket(session, "in_progress", lead_department="RSJ")
    resp = upload(client, login("dept_rsj"), ticket.number, ("答复函.pdf", s.pdf(), "application/pdf"))
    assert resp.status_code == 201, resp.text


def test_attach_to_an_event(session, client, login, store_dir):
    ticket = f.make_ticket(session, "dispatched")
    f.act(session, ticket, "add_info", {"text": "补充营业执照"})
    session.commit()
    [add_info] = [e for e in f.events(session, ticket) if e.action == "add_info"]
    resp = upload(client, login("ent1"), ticket.number, ("执照.jpg", s.jpeg(), "image/jpeg"),
                  data={"event_id": str(add_info.id)})
    assert resp.status_code == 201 and resp.json()[0]["event_id"] == add_info.id
    other = f.make_ticket(session, "submitted", title="别的诉求")
    [foreign] = f.events(session, other)
    problem(upload(client, login("ent1"), ticket.number, ("a.png", s.png(), "image/png"),
                   data={"event_id": str(foreign.id)}), 422, "event_id")


@pytest.mark.parametrize(("files", "data", "field"), [
    ([], {"note": "没有文件"}, "files"),
    ([("empty.png", b"", "image/png")], None, "files[0]"),
    ([("a" * 300 + ".png", s.png(), "image/png")], None, "files[0].filename"),
    ([("a.png", s.png(), "image/png")], {"event_id": "0"}, "event_id"),
    ([("a.png", s.png(), "image/png")], {"event_id": "99999999999"}, "event_id"),
    ([("a.png", s.png(), "image/png")], {"note": "a\x00b"}, "note"),
    ([("a.png", s.png(), "image/png")], {"note": "长" * 2001}, "note"),
    ([(f"{i}.png", s.png(seed=i), "image/png") for i in range(6)], None, "files"),
])
def test_bad_input_names_the_field(session, client, login, store_dir, files, data, field):
    ticket = f.make_ticket(session, "submitted")
    problem(upload(client, login("ent1"), ticket.number, *files, data=data), 422, field)
    assert n_attachments(session, ticket) == 0 and blobs(store_dir) == []


def test_nul_in_the_file_name(session, client, login, store_dir):
    ticket = f.make_ticket(session, "submitted")
    boundary = "qifu-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a\x00b.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + s.png() + f"\r\n--{boundary}--\r\n".encode()
    resp = client.post(f"{API}/tickets/{ticket.number}/attachments", content=body,
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}", **login("ent1")})
    problem(resp, 422, "files[0].filename")


def test_json_instead_of_a_form_is_422(session, client, login, store_dir):
    ticket = f.make_ticket(session, "submitted")
    resp = client.post(f"{API}/tickets/{ticket.number}/attachments", json={"files": ["x"]}, headers=login("ent1"))
    assert resp.status_code == 422, resp.text


@pytest.mark.parametrize(("path", "status"), [("0", 422), ("2147483648", 422), ("abc", 422), ("2147483647", 404)])
def test_download_bad_ids(client, login, path, status):
    problem(client.get(f"{API}/attachments/{path}", headers=login("admin")), status)


def test_unknown_ticket_is_404(client, login, store_dir):
    problem(upload(client, login("ent1"), "QF1999-999999", ("a.png", s.png(), "image/png")), 404)
    problem(client.get(f"{API}/tickets/QF1999-999999/attachments", headers=login("ent1")), 404)


def test_no_plain_attach_action_endpoint(session, client, login):
    ticket = f.make_ticket(session, "submitted")
    resp = client.post(f"{API}/tickets/{ticket.number}/attach", json={"attachment_id": 1}, headers=login("ent1"))
    assert resp.status_code in (404, 405)
