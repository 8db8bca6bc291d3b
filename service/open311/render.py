"""GeoReport v2 documents as JSON or XML (the specification's "Format Support": UTF-8, an XML
declaration with ``encoding="UTF-8"``, ``text/xml`` or ``application/json``).

A document is plain data: a list of items (services, requests, errors: the root element is the
plural and each item its singular) or a dict (discovery, a service definition: one root
element). Lists inside an item are wrapped in their plural element, one child per value, with
the element names of :data:`ITEM_NAMES`. The XML is built with the standard library's
``xml.etree.ElementTree`` (escaping, well-formedness).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "text/xml; charset=utf-8"
MEDIA_TYPES = {"json": JSON_TYPE, "xml": XML_TYPE}

#: the element of each value of a list, by the list's element
ITEM_NAMES = {"services": "service", "service_requests": "request", "errors": "error", "endpoints": "endpoint",
              "formats": "format", "attributes": "attribute", "values": "value"}
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for name, inner in value.items():
            _fill(ET.SubElement(element, name), inner)
    elif isinstance(value, list):
        item = ITEM_NAMES[element.tag]
        for inner in value:
            _fill(ET.SubElement(element, item), inner)
    elif value is not None:
        element.text = _text(value)


def to_xml(root: str, data: Any) -> bytes:
    """``data`` under the root element ``root`` (a list: one ``ITEM_NAMES[root]`` per value)."""
    element = ET.Element(root)
    _fill(element, data)
    return _DECLARATION + ET.tostring(element, encoding="unicode").encode()


def to_json(data: Any) -> bytes:
    """``data`` as UTF-8 JSON (Chinese as is, not escaped)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def render(fmt: str, root: str, data: Any) -> bytes:
    """``data`` in ``fmt`` (``json`` or ``xml``); ``root`` is the XML root element."""
    return to_json(data) if fmt == "json" else to_xml(root, data)


def errors(status: int, description: str) -> list[dict[str, Any]]:
    """The specification's error list: one error with the HTTP status as its ``code``."""
    return [{"code": status, "description": description}]


def too_large(path: str, limit: int) -> tuple[bytes, str]:
    """The answer to a body over ``limit`` bytes under ``/open311/`` (413, given by the body size
    middleware before the body is read): the error list, in the format the path ends with."""
    fmt = "xml" if path.endswith(".xml") else "json"
    description = f"the request body is larger than {limit} bytes（请求体超过 {limit} 字节的上限）"
    return render(fmt, "errors", errors(413, description)), MEDIA_TYPES[fmt]
