"""The pages the API serves (qifu/web, issue 10) work without internet access: /docs and /dashboard
reference only the server's own files, which it serves; the static route serves nothing else.
(The browser test beside this one renders them in chromium.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qifu.web import ECHARTS_VERSION, STATIC_DIR, SWAGGER_UI_VERSION

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|https?://""", re.I)
PROBLEM = "application/problem+json"


def _assets(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["'](/[^"']+)["']""", html) + re.findall(r"""url:\s*'(/[^']+)'""", html)


def test_docs_reference_only_the_servers_files(client):
    resp = client.get("/docs")
    assert resp.status_code == 200
    html = resp.text
    assert EXTERNAL.search(html) is None, EXTERNAL.search(html)
    assets = _assets(html)
    assert f"/static/vendor/swagger-ui/{SWAGGER_UI_VERSION}/swagger-ui-bundle.js" in assets
    assert f"/static/vendor/swagger-ui/{SWAGGER_UI_VERSION}/swagger-ui.css" in assets
    assert '"validatorUrl": null' in html  # no validator badge fetched from the internet
    for url in assets:
        asset = client.get(url)
        assert asset.status_code == 200, url
        if url.startswith("/static/vendor/"):
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert client.get("/static/vendor/swagger-ui/5.35.0/swagger-ui-bundle.js").headers["content-type"].startswith(
        ("text/javascript", "application/javascript"))
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert client.get("/redoc").status_code == 404  # ReDoc would need fonts from the internet: not offered


def test_dashboard_page_and_its_files(client):
    resp = client.get("/dashboard")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert "督办统计" in resp.text
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp  # the browser refuses anything else
    assert EXTERNAL.search(resp.text) is None
    assets = _assets(resp.text)
    assert f"/static/vendor/echarts/{ECHARTS_VERSION}/echarts.min.js" in assets
    for url in assets:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert EXTERNAL.search(asset.text) is None or "vendor" in url, url
    assert client.get("/static/dashboard/dashboard.js").headers["cache-control"] == "no-cache"


def test_dashboard_sends_its_calls_before_echarts_runs(client):
    """docs/dashboard.md "First render": both scripts are deferred (they run in document order),
    dashboard.js first, so the page's API calls leave before the 1 MB of ECharts is parsed and run."""
    scripts = re.findall(r"<script\b[^>]*>", client.get("/dashboard").text)
    assert len(scripts) == 2 and all(" defer" in tag for tag in scripts), scripts
    assert "/static/dashboard/dashboard.js" in scripts[0] and "/echarts.min.js" in scripts[1], scripts


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/../pyproject.toml", "/static/%2e%2e/qifu/main.py",
                                  "/static/vendor/../../__init__.py", "/static/", "/static/dashboard"])
def test_static_serves_only_its_files(client, path):
    resp = client.get(path)
    assert resp.status_code == 404, (path, resp.status_code)
    assert resp.headers["content-type"] == PROBLEM


def test_vendored_files_carry_their_licences():
    for vendor in (STATIC_DIR / "vendor" / "echarts" / ECHARTS_VERSION,
                   STATIC_DIR / "vendor" / "swagger-ui" / SWAGGER_UI_VERSION):
        assert "Apache License" in (vendor / "LICENSE").read_text(), vendor
    readme = (STATIC_DIR / "vendor" / "README.md").read_text()
    assert f"echarts@{ECHARTS_VERSION}" in readme and f"swagger-ui-dist@{SWAGGER_UI_VERSION}" in readme
    index = (STATIC_DIR / "dashboard" / "index.html").read_text()
    assert f"/vendor/echarts/{ECHARTS_VERSION}/" in index


def test_static_files_ship_in_the_wheel():
    """hatch puts every file of the ``qifu`` package in the wheel unless git ignores it."""
    ignored = (Path(__file__).resolve().parents[2] / ".gitignore").read_text()
    assert "static" not in ignored and "*.js" not in ignored and "*.min.js" not in ignored
