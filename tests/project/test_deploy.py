"""Production settings and the headers every response carries."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _check_deploy(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "auditproject.settings_production", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_under_production_settings():
    """`manage.py check --deploy` reports nothing under the production settings with a real secret key."""
    result = _check_deploy(SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="audit.example.org")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_the_development_key():
    """Without SECRET_KEY the production settings refuse to start rather than run with the development key."""
    env = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "auditproject.settings_production"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.django_db
def test_responses_carry_the_security_headers(client, settings):
    """Every response says nosniff, same-origin referrer and opener policy, and refuses to be framed."""
    settings.ALLOWED_HOSTS = ["testserver"]
    response = client.get("/admin/login/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


def test_static_files_are_served_by_the_app(client, settings):
    """The admin's static files come from the app itself (whitenoise): no web server needed in front."""
    settings.ALLOWED_HOSTS = ["testserver"]
    response = client.get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content).strip()
