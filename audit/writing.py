"""Inserting one audit entry, with the values the database may store in a form of its own read back at once.

The INSERT returns the id and the columns whose stored form can differ from what was sent (JSON: PostgreSQL's
jsonb writes ``1e+16`` as ``10000000000000000``; addresses in their canonical form), so the entry in memory is the
entry as stored: its digest is the one ``audit_verify`` will compute from the row, without reading the row again.

On PostgreSQL the statements every write runs go through ``bound_cursor``: parameters sent apart from the SQL,
where Django's cursors quote each value into the statement text (about a third of the INSERT's client time for the
entry's 18 values, measured).
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import psycopg
from django.db import connections, models
from django.db.backends.utils import CursorWrapper
from django.db.models import Field

from .models import AuditLog

# Fields whose stored form may differ from what was sent; every other column is stored exactly as sent (text,
# bytes, timestamps with microseconds).
NORMALISED_BY_THE_DATABASE = (models.JSONField, models.GenericIPAddressField)


@dataclass(frozen=True)
class _Statement:
    sql: str
    sent: tuple[Field, ...]
    returned: tuple[tuple[Field, tuple[Callable[..., Any], ...]], ...]  # each field with its converters


@cache
def _statement(using: str) -> _Statement:
    connection = connections[using]
    qn = connection.ops.quote_name
    sent = tuple(field for field in AuditLog._meta.concrete_fields if not field.primary_key)
    returned = tuple(
        field
        for field in AuditLog._meta.concrete_fields
        if field.primary_key or isinstance(field, NORMALISED_BY_THE_DATABASE)
    )
    sql = (
        f"INSERT INTO {qn(AuditLog._meta.db_table)} ({', '.join(qn(field.column) for field in sent)}) "
        f"VALUES ({', '.join(['%s'] * len(sent))}) RETURNING {', '.join(qn(field.column) for field in returned)}"
    )
    converters = tuple(
        (field, tuple(connection.ops.get_db_converters(field.cached_col)) + tuple(field.get_db_converters(connection)))
        for field in returned
    )
    return _Statement(sql, sent, converters)


def bound_cursor(using: str) -> CursorWrapper:
    """A cursor of ``using`` with server-side parameter binding on PostgreSQL (Django's own cursors bind on the
    client unless the whole project opts in); wrapped as Django wraps its cursors, so queries are logged and
    counted alike. Other backends: their usual cursor."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    cursor = psycopg.Cursor(connection.connection)
    return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)


def insert_entry(entry: AuditLog, using: str) -> AuditLog:
    """Insert ``entry`` (unsaved) in one statement; afterwards it holds its id and its values as stored."""
    connection = connections[using]
    statement = _statement(using)
    params = [field.get_db_prep_save(getattr(entry, field.attname), connection) for field in statement.sent]
    with bound_cursor(using) as cursor:
        cursor.execute(statement.sql, params)
        row = cursor.fetchone()
    for (field, converters), value in zip(statement.returned, row, strict=True):
        for convert in converters:
            value = convert(value, field.cached_col, connection)
        setattr(entry, field.attname, value)
    entry._state.adding = False
    entry._state.db = using
    return entry
