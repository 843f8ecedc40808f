"""Inserting one audit entry, with the values the database may store in a form of its own read back at once.

The INSERT returns the id and the columns whose stored form can differ from what was sent (JSON: PostgreSQL's
jsonb writes ``1e+16`` as ``10000000000000000``; addresses in their canonical form), so the entry in memory is the
entry as stored: its digest is the one ``audit_verify`` will compute from the row, without reading the row again.

On PostgreSQL the statements every write runs go through ``bound_cursor``: parameters sent apart from the SQL,
where Django's cursors quote each value into the statement text (about a third of the INSERT's client time for the
entry's 18 values, measured).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
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


# Rows per statement of ``insert_entries``; fewer where the backend takes fewer parameters.
ROWS_PER_INSERT = 500


@lru_cache(maxsize=32)
def _statement(using: str, rows: int = 1) -> _Statement:
    """INSERT of ``rows`` entries, returning for each its id (the primary key comes first) and the columns the
    database normalises."""
    connection = connections[using]
    qn = connection.ops.quote_name
    sent = tuple(field for field in AuditLog._meta.concrete_fields if not field.primary_key)
    returned = tuple(
        field
        for field in AuditLog._meta.concrete_fields
        if field.primary_key or isinstance(field, NORMALISED_BY_THE_DATABASE)
    )
    values = ", ".join([f"({', '.join(['%s'] * len(sent))})"] * rows)
    sql = (
        f"INSERT INTO {qn(AuditLog._meta.db_table)} ({', '.join(qn(field.column) for field in sent)}) "
        f"VALUES {values} RETURNING {', '.join(qn(field.column) for field in returned)}"
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


def insert_entries(entries: Sequence[AuditLog], using: str) -> None:
    """Insert ``entries`` (unsaved) with multi-row statements; afterwards each holds its id and values as stored."""
    connection = connections[using]
    per_statement = ROWS_PER_INSERT
    if connection.features.max_query_params:
        per_statement = min(per_statement, connection.features.max_query_params // len(_statement(using).sent))
    for start in range(0, len(entries), per_statement):
        chunk = entries[start : start + per_statement]
        statement = _statement(using, len(chunk))
        params = [
            field.get_db_prep_save(getattr(entry, field.attname), connection)
            for entry in chunk
            for field in statement.sent
        ]
        with bound_cursor(using) as cursor:
            cursor.execute(statement.sql, params)
            rows = cursor.fetchall()
        # Ids are drawn in the order of the VALUES; the order RETURNING hands rows back in is not promised (SQLite).
        rows.sort(key=lambda row: row[0])
        for entry, row in zip(chunk, rows, strict=True):
            for (field, converters), value in zip(statement.returned, row, strict=True):
                for convert in converters:
                    value = convert(value, field.cached_col, connection)
                setattr(entry, field.attname, value)
            entry._state.adding = False
            entry._state.db = using
