"""The element names of GeoReport v2 (http://wiki.open311.org/GeoReport_v2 and its Service
Discovery page), per document: an XML answer must use these and no others, in this nesting."""

from __future__ import annotations

import xml.etree.ElementTree as ET

REQUEST_FIELDS = {"service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                  "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                  "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"}

#: element -> the child elements it may have (leaves: an empty set)
TREE: dict[str, set[str]] = {
    # Service Discovery
    "discovery": {"changeset", "contact", "key_service", "endpoints"},
    "endpoints": {"endpoint"},
    "endpoint": {"specification", "url", "changeset", "type", "formats"},
    "formats": {"format"},
    # GET Service List
    "services": {"service"},
    "service": {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"},
    # GET Service Definition
    "service_definition": {"service_code", "attributes"},
    "attributes": {"attribute"},
    "attribute": {"variable", "code", "datatype", "required", "datatype_description", "order", "description",
                  "values"},
    "values": {"value"},
    "value": {"key", "name"},
    # POST Service Request, GET Service Requests / Request, GET request_id from a token
    "service_requests": {"request"},
    "request": REQUEST_FIELDS | {"token", "account_id"},
    # errors
    "errors": {"error"},
    "error": {"code", "description"},
}
ROOTS = {"discovery", "services", "service_definition", "service_requests", "errors"}
DATATYPES = {"string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"}


def check_xml(body: bytes, root: str) -> ET.Element:
    """Parse ``body`` and check it against :data:`TREE` (every element known, in its place,
    leaves without children); return the root element."""
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>'), body[:60]
    element = ET.fromstring(body)
    assert element.tag == root and root in ROOTS, element.tag

    def walk(node: ET.Element, allowed: set[str]) -> None:
        for child in node:
            assert child.tag in allowed, f"<{child.tag}> is not a child of <{node.tag}> in GeoReport v2"
            walk(child, TREE.get(child.tag, set()))
            if child.tag not in TREE:
                assert len(child) == 0, child.tag

    walk(element, TREE[root])
    for attribute in element.iter("attribute"):
        assert attribute.findtext("datatype") in DATATYPES
    return element
