"""The OpenAPI document declares the errors each operation gives, as RFC 9457 problems
(issue #11 point 5); the fuzzer (test_fuzz_api.py) holds the running API to it."""

from __future__ import annotations

import pytest

from qifu.main import create_app

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def doc() -> dict:
    return create_app().openapi()


def _operations(doc, open311: bool = False):
    """Every operation; those tagged ``open311`` (GeoReport v2, errors as its error lists) only
    when ``open311``."""
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if ("open311" in op.get("tags", ())) == open311:
                yield method.upper(), path, op


def test_every_error_answer_is_a_problem(doc):
    assert {"type", "title", "status", "detail"} <= set(doc["components"]["schemas"]["Problem"]["required"])
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for method, path, op in _operations(doc):
        for code, response in op["responses"].items():
            if code[0] in "45":
                assert list(response["content"]) == [PROBLEM], (method, path, code)
                assert response["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}
                assert response["description"], (method, path, code)


def test_statuses_follow_the_shape_of_each_operation(doc):
    for method, path, op in _operations(doc):
        codes = set(op["responses"])
        if "security" in op:
            assert "401" in codes, (method, path)
        if "{" in path:
            assert "404" in codes, (method, path)
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in codes, (method, path)
        if op.get("requestBody"):
            assert "400" in codes, (method, path)


@pytest.mark.parametrize(("method", "path", "codes"), [
    ("POST", "/api/v1/tickets/{number}/accept", {"401", "403", "404", "409", "412", "422"}),
    ("POST", "/api/v1/tickets", {"401", "403", "422"}),
    ("POST", "/api/v1/auth/token", {"401", "422"}),
    ("PATCH", "/api/v1/departments/{department_id}", {"401", "403", "404", "409", "422"}),
    ("GET", "/api/v1/stats/summary", {"401", "403", "422"}),
    ("POST", "/api/v1/clinics/{session_id}/bookings", {"401", "403", "404", "409", "422"}),
    ("GET", "/api/v1/me", {"401"}),
])
def test_declared_statuses(doc, method, path, codes):
    declared = {c for c in doc["paths"][path][method.lower()]["responses"] if c[0] == "4"}
    assert codes <= declared, declared


def test_open311_errors_are_georeport_error_lists(doc):
    """GeoReport v2 operations (docs/open311.md) answer errors as the specification's error lists
    in the format of their path, never 422 (their parameters are text, checked by the handler)."""
    operations = list(_operations(doc, open311=True))
    assert len(operations) == 14
    for method, path, op in operations:
        media = "application/json" if path.endswith(".json") else "text/xml"
        codes = {c for c in op["responses"] if c[0] in "45"}
        assert "422" not in codes and ("400" in codes or "/discovery." in path), (method, path)
        for code in codes:
            (declared,) = op["responses"][code]["content"]
            assert declared == media, (method, path, code)
            if media == "application/json":
                schema = op["responses"][code]["content"][media]["schema"]
                assert schema["items"] == {"$ref": "#/components/schemas/ErrorItem"}


def test_patch_bodies_say_which_fields_refuse_null(doc):
    props = doc["components"]["schemas"]["EnterpriseUpdate"]["properties"]
    assert props["name"]["type"] == "string"  # not nullable
    assert {"type": "null"} in props["contact_phone"]["anyOf"]  # clearable


def test_clinic_time_has_an_offset(doc):
    start = doc["components"]["schemas"]["ClinicScheduleRead"]["properties"]["start_time"]
    assert start["format"] == "time" and "+08:00" in start["description"]
