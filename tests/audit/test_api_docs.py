"""The OpenAPI docs pages: served from the project's own static files, so they work offline."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

ASSET = re.compile(r'<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"', re.IGNORECASE)


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.ALLOWED_HOSTS = ["testserver"]


def assets(page: str) -> list[str]:
    return ASSET.findall(page)


@pytest.mark.parametrize("url", ["/api/docs", "/api/redoc"])
def test_docs_page_loads_without_any_other_site(db, url):
    """The Swagger UI (/api/docs) and ReDoc (/api/redoc) pages load and name no http(s):// address at all: no CDN
    script, stylesheet, font or favicon."""
    response = Client().get(url)

    assert response.status_code == 200
    page = response.content.decode()
    assert not re.search(r"https?://", page)
    assert assets(page), "the page loads its UI from static files"


@pytest.mark.parametrize("url", ["/api/docs", "/api/redoc"])
def test_docs_assets_are_static_files_of_the_project(db, url):
    """Every script, stylesheet and icon the page loads is one of the project's static files (drf-spectacular-sidecar),
    found by the staticfiles finders, so collectstatic ships it."""
    page = Client().get(url).content.decode()

    for asset in assets(page):
        assert asset.startswith("/static/drf_spectacular_sidecar/"), asset
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not a static file of the project"


def test_docs_page_reads_the_local_schema(db):
    """The Swagger UI reads the schema from this server's /api/schema, which answers with the OpenAPI document."""
    client = Client()

    page = client.get("/api/docs").content.decode()
    schema = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert 'url: "/api/schema"' in page
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Compliance console API"
    assert "/api/audit/events" in schema.json()["paths"]
