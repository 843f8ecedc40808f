"""Verification: tampering through raw SQL, with the triggers out of the way, is found and named."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from audit.actions import AuditAction
from audit.models import AuditLog
from audit.sealing import seal_pending
from audit.services import record
from audit.verify import verify_chain


@pytest.fixture
def entries(db):
    """Five sealed entries, at chain positions 0..4."""
    recorded = [record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=i, meta={"n": i}) for i in range(5)]
    assert seal_pending() == 5
    return recorded


@pytest.fixture
def tamper(triggers_dropped):
    def run(sql, params=()):
        with triggers_dropped(), connection.cursor() as cursor:
            cursor.execute(sql, params)

    return run


def _findings():
    return [(finding.kind, finding.entry_id, finding.chain_index) for finding in verify_chain().findings]


def _command_fails() -> list[str]:
    """Run audit_verify, expect exit status 1 and return its output lines."""
    out = StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("audit_verify", "--no-progress", stdout=out)
    assert exited.value.code == 1
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("Audit chain NOT intact")
    return lines


def _verify_entry() -> AuditLog:
    return AuditLog.objects.get(action=AuditAction.AUDIT_VERIFY)


@pytest.mark.parametrize(
    ("column", "value"), [("entity_id", "forged"), ("actor_label", "mallory"), ("meta", '{"n": 99}')]
)
def test_modified_entry_is_reported(entries, tamper, column, value):
    """A field of a sealed entry changed through raw SQL is reported as "modified", naming that entry."""
    target = entries[2]
    tamper(f"UPDATE audit_auditlog SET {column} = %s WHERE id = %s", [value, target.pk])
    assert _findings() == [("modified", target.pk, 2)]
    assert any(line.startswith(f"modified: entry {target.pk} (chain #2)") for line in _command_fails())


def test_deleted_entry_is_reported_missing(entries, tamper):
    """A sealed entry deleted through raw SQL is reported as "missing", naming that entry."""
    target = entries[1]
    tamper("DELETE FROM audit_auditlog WHERE id = %s", [target.pk])
    assert _findings() == [("missing", target.pk, 1)]
    assert any(line.startswith(f"missing: entry {target.pk} (chain #1)") for line in _command_fails())


def test_forged_link_is_reported(entries, tamper):
    """A seal whose prev_hash was rewritten is reported as "broken_link", naming its entry."""
    target = entries[3]
    tamper("UPDATE audit_seal SET prev_hash = %s WHERE chain_index = 3", ["f" * 64])
    assert {finding[:2] for finding in _findings()} == {("broken_link", target.pk)}
    assert any(line.startswith(f"broken_link: entry {target.pk} (chain #3)") for line in _command_fails())


def test_deleted_seal_is_reported_as_gap(entries, tamper):
    """A seal deleted from the middle of the chain is reported as a "gap" at the next position."""
    tamper("DELETE FROM audit_seal WHERE chain_index = 2")
    assert _findings() == [("gap", None, 3)]
    assert any(line.startswith("gap: no entry (chain #3)") for line in _command_fails())


def test_deleted_seal_leaves_its_entry_unsealed(entries, tamper, settings):
    """Once the grace period is over, the entry of a deleted seal is also reported as "unsealed"."""
    settings.AUDIT_SEAL_GRACE_SECONDS = 0
    target = entries[2]
    tamper("DELETE FROM audit_seal WHERE chain_index = 2")
    assert _findings() == [("gap", None, 3), ("unsealed", target.pk, None)]
    assert any(line.startswith(f"unsealed: entry {target.pk}:") for line in _command_fails())


def test_entry_unsealed_within_grace_period_is_not_reported(entries):
    """An entry not yet sealed but younger than the grace period is no finding."""
    record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="new")
    assert verify_chain().ok


def test_entry_unsealed_past_grace_period_is_reported(entries, settings):
    """An entry left unsealed longer than the grace period is reported as "unsealed", naming it."""
    settings.AUDIT_SEAL_GRACE_SECONDS = 0
    late = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id="never sealed")
    assert _findings() == [("unsealed", late.pk, None)]
    assert any(line.startswith(f"unsealed: entry {late.pk}:") for line in _command_fails())


def test_intact_chain_passes(entries):
    """An intact chain exits with status 0 and prints one summary line."""
    assert verify_chain().ok
    out = StringIO()
    call_command("audit_verify", "--no-progress", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Audit chain intact: 5 entries and 0 signed digests verified, head #4 ")


def test_command_records_a_successful_verify(entries):
    """The command records an AUDIT.VERIFY entry with outcome success when the chain is intact."""
    call_command("audit_verify", "--no-progress", stdout=StringIO())
    entry = _verify_entry()
    assert entry.outcome == AuditLog.Outcome.SUCCESS
    assert entry.meta == {"entries_checked": 5, "findings": 0, "via": "command"}


def test_command_records_a_failed_verify(entries, tamper):
    """The command records an AUDIT.VERIFY entry with outcome failure when it finds tampering."""
    tamper("DELETE FROM audit_auditlog WHERE id = %s", [entries[0].pk])
    _command_fails()
    entry = _verify_entry()
    assert entry.outcome == AuditLog.Outcome.FAILURE
    assert entry.meta["findings"] == 1
