"""The problem answers of every operation in the OpenAPI document, derived from the routes
(issue #11 point 5; the rules are in :mod:`service.common.openapi`). Entry layer: it inspects the
application's routes and the auth dependencies they use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from service.auth.dependencies import get_current_actor
from service.common.openapi import _REF, DESCRIPTIONS, PROBLEM_MEDIA_TYPE, Problem, problem_responses


def _calls(dependant) -> Iterator[Any]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def api_routes(routes) -> Iterator[APIRoute]:
    """Every :class:`APIRoute` under ``routes`` (``app.router.routes``), included routers too."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.16x keeps included routers
        if inner is not None:
            yield from api_routes(inner.routes)


def route_problem_codes(route: APIRoute) -> set[int]:
    """The error statuses ``route`` can give by its shape (see the module docstring)."""
    calls = list(_calls(route.dependant))
    codes: set[int] = set()
    if get_current_actor in calls:
        codes.add(401)
    if any("require_roles" in getattr(call, "__qualname__", "") for call in calls):
        codes.add(403)
    dependants = (route.dependant, *_all(route.dependant))
    if any(d.path_params for d in dependants):
        codes.add(404)
    if any(d.path_params or d.query_params or d.header_params or d.cookie_params or d.body_params
           for d in dependants):
        codes.add(422)
    if any(d.body_params for d in dependants):
        codes.add(400)
    return codes


def _all(dependant) -> Iterator[Any]:
    for dep in dependant.dependencies:
        yield dep
        yield from _all(dep)


#: Operations with this tag answer errors in their own standard's format (Open311 GeoReport v2
#: error lists, declared on each route: service/open311/router.py), not as problems.
OWN_ERROR_FORMAT_TAG = "open311"


def declare_problem_responses(app: FastAPI) -> None:
    """Add to each API route of ``app`` the problem answers its shape implies (idempotent); routes
    tagged :data:`OWN_ERROR_FORMAT_TAG` declare their own."""
    for route in api_routes(app.router.routes):
        if OWN_ERROR_FORMAT_TAG in (route.tags or ()):
            continue
        for code, response in problem_responses(*sorted(route_problem_codes(route))).items():
            route.responses.setdefault(code, response)


def _problem_everywhere(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in problem.pop("$defs", {}).items():
        components[name] = definition
    components["Problem"] = problem
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if OWN_ERROR_FORMAT_TAG in operation.get("tags", ()):
                operation["responses"].pop("422", None)  # its parameters are text, checked by the handler
                continue
            for code, response in operation["responses"].items():
                if code.startswith("4") or code.startswith("5"):
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _REF}}}
                    response["description"] = response.get("description") or DESCRIPTIONS.get(int(code), "")
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    return schema


def install_problem_openapi(app: FastAPI) -> None:
    """Declare each route's problem answers and serve every 4xx of the OpenAPI document as
    ``application/problem+json`` :class:`Problem`. Call after the routers are included."""
    declare_problem_responses(app)
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problem_everywhere(original())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
