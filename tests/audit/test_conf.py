"""The audit knobs are read once and again after each change of the setting, as tests and deployments expect."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from audit import conf


def test_a_changed_setting_is_read_anew(settings):
    """A value read before a change is not kept after it: the change, and its undoing, are seen at once."""
    assert conf.max_json_bytes() == 64 * 1024  # unset: the default
    settings.AUDIT_MAX_JSON_BYTES = 100
    assert conf.max_json_bytes() == 100
    with override_settings(AUDIT_MAX_JSON_BYTES=7):
        assert conf.max_json_bytes() == 7
    assert conf.max_json_bytes() == 100


def test_a_bad_value_is_refused_on_every_read(settings):
    """What is remembered is the setting, not a verdict on it: a wrong value fails every time it is asked for."""
    settings.AUDIT_SEALING = "sometimes"
    for _ in range(2):
        with pytest.raises(ImproperlyConfigured, match="AUDIT_SEALING"):
            conf.sealing_mode()
