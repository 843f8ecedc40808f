"""Fixtures of the retention tests (archive and legal holds): signing keys, an archive directory, an old trail."""

from pathlib import Path
from typing import Any

import pytest

from tests.audit.archive_helpers import Keys, Trail, make_keys, old_trail


@pytest.fixture
def keys(tmp_path: Path, settings: Any) -> Keys:
    return make_keys(tmp_path / "keys", settings)


@pytest.fixture
def archive_dir(tmp_path: Path, settings: Any) -> Path:
    settings.AUDIT_ARCHIVE_DIR = str(tmp_path / "archive")
    return tmp_path / "archive"


@pytest.fixture
def trail(db: Any, keys: Keys, archive_dir: Path) -> Trail:
    return old_trail()
