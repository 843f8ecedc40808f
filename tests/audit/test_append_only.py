"""Append-only in three layers: the model, the queryset and the database triggers refuse changes and deletes."""

import pytest
from django.db import DatabaseError, connection, transaction

from audit.actions import AuditAction
from audit.exceptions import AuditLogImmutableError
from audit.models import AuditLog, Seal
from audit.sealing import seal_pending
from audit.services import record
from tests.audit.read_back import read_back


@pytest.fixture
def entry(db, user):
    entry = record(AuditAction.ROLE_UPDATE, entity="Role", entity_id=42, actor=user)
    seal_pending()
    return entry


@pytest.fixture(params=["entry", "seal"])
def row(request, entry):
    """An existing row of each append-only table, with the column a tamperer would change."""
    if request.param == "entry":
        return AuditLog.objects.get(pk=entry.pk), "entity_id", "'43'"
    return Seal.objects.get(entry=entry), "digest", "'0'"


def _raw(sql, params=()):
    # atomic: on PostgreSQL a failed statement would otherwise abort the test's transaction.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_save_of_existing_row_is_refused(row):
    """save() of a row that is already stored raises AuditLogImmutableError, and the row stays as it was."""
    obj, column, _ = row
    before = getattr(obj, column)
    setattr(obj, column, "43")
    with pytest.raises(AuditLogImmutableError):
        obj.save()
    assert getattr(type(obj).objects.get(pk=obj.pk), column) == before


def test_model_delete_is_refused(row):
    """Model delete() raises AuditLogImmutableError, and the row is still there."""
    obj, _, _ = row
    with pytest.raises(AuditLogImmutableError):
        obj.delete()
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_queryset_update_is_refused(row):
    """QuerySet.update() raises AuditLogImmutableError."""
    obj, column, _ = row
    with pytest.raises(AuditLogImmutableError):
        type(obj).objects.filter(pk=obj.pk).update(**{column: "43"})


def test_queryset_delete_is_refused(row):
    """QuerySet.delete() raises AuditLogImmutableError, and nothing is deleted."""
    obj, _, _ = row
    with pytest.raises(AuditLogImmutableError):
        type(obj).objects.all().delete()
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_bulk_update_is_refused(row):
    """bulk_update() raises AuditLogImmutableError."""
    obj, column, _ = row
    setattr(obj, column, "43")
    with pytest.raises(AuditLogImmutableError):
        type(obj).objects.bulk_update([obj], [column])


def test_raw_sql_update_is_refused(row):
    """An UPDATE through raw SQL is refused by a trigger on both databases, and the row stays as it was."""
    obj, column, literal = row
    table = obj._meta.db_table
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(f"UPDATE {table} SET {column} = {literal}")
    assert getattr(type(obj).objects.get(pk=obj.pk), column) == getattr(obj, column)


def test_raw_sql_delete_is_refused(row):
    """A DELETE through raw SQL is refused by a trigger on both databases, and the row is still there."""
    obj, _, _ = row
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(f"DELETE FROM {obj._meta.db_table}")
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_raw_sql_truncate_is_refused(postgres_only, row):
    """TRUNCATE is refused by a statement trigger on PostgreSQL, and the row is still there."""
    obj, _, _ = row
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(f"TRUNCATE {obj._meta.db_table}")
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_deleting_the_actor_keeps_the_entries(entry, user):
    """Deleting a user neither deletes nor blocks its entries; actor id and label stay readable."""
    user_id, username = user.pk, user.username
    user.delete()
    kept = read_back(pk=entry.pk)
    assert kept.actor_id == user_id
    assert kept.actor_label == username
