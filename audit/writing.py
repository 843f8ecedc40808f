"""Inserting audit entries, with the values the database may store in a form of its own read back at once.

The INSERT returns the id, and when an entry holds a value whose stored form can differ from what was sent, the
columns that hold such values (JSON with a float: PostgreSQL's jsonb writes ``1e+16`` as ``10000000000000000``;
addresses in their canonical form). The entry in memory is then the entry as stored: its digest is the one
``audit_verify`` will compute from the row, without reading the row again.

On PostgreSQL the statements every write runs go through ``bound_cursor``: parameters sent apart from the SQL,
where Django's cursors quote each value into the statement text, and the statement prepared once per connection.
An entry's values go to the driver as they are (text, numbers, bytes, JSON as canonical text) rather than through
each field's ``get_db_prep_save``: the entry is built by the recorder, whose values are already of the column's
type.
Measured with ``bench/append.py`` at 4 writers: the database's CPU per write fell by a fifth, the writers' by an
eighth.
"""

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from operator import attrgetter
from typing import Any

import psycopg
from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field

from . import conf
from .hashing import COMMITTED_FIELDS, CanonicalJson, canonical_text
from .models import AuditLog

# Rows per statement of ``insert_entries``; fewer where the backend takes fewer parameters.
ROWS_PER_INSERT = 500

_JSON_FIELDS = tuple(field for field in AuditLog._meta.concrete_fields if isinstance(field, models.JSONField))
_ADDRESS_FIELDS = tuple(
    field for field in AuditLog._meta.concrete_fields if isinstance(field, models.GenericIPAddressField)
)
# The columns an INSERT sends: all but the id.
_SENT = tuple(field for field in AuditLog._meta.concrete_fields if not field.primary_key)
_COLUMNS_SENT = len(_SENT)
# How the columns' values go to the driver on PostgreSQL (see ``_conversion``).
_SENT_AS_TEXT = (models.JSONField,)
_SENT_AS_BYTES = (models.BinaryField,)
_SENT_AS_THEY_ARE = (models.CharField, models.TextField, models.DateTimeField, models.ForeignKey, models.BigAutoField)


@dataclass(frozen=True)
class _Statement:
    sql: str
    parameters: Callable[[AuditLog], list[Any]]  # an entry's parameters, one per column sent
    returned: tuple[tuple[Field, tuple[Callable[..., Any], ...]], ...]  # each field with its converters


def _json_text(value: Any) -> str | None:
    # In canonical form: what an entry's digest hashes, so that the sealer hashes the text sent as it is.
    return None if value is None else canonical_text(value)


def _as_bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _conversion(field: Field, using: str) -> Callable[[Any], Any] | None:
    """What an entry's value of ``field`` goes through before it is sent: on PostgreSQL nothing where the driver
    takes the value as it is (it sends text as of unknown type, which the column's type then reads), elsewhere
    what Django does to prepare it."""
    if connections[using].vendor == "postgresql":
        if isinstance(field, _SENT_AS_TEXT):
            return _json_text
        if isinstance(field, _SENT_AS_BYTES):
            return _as_bytes
        if isinstance(field, _SENT_AS_THEY_ARE):
            return None
    return partial(field.get_db_prep_save, connection=connections[using])


def _parameters(fields: Sequence[Field], using: str) -> Callable[[AuditLog], list[Any]]:
    """A function from an entry to its parameters for ``fields``: the values read in one call, then converted
    where they must be."""
    values = attrgetter(*(field.attname for field in fields))
    conversions = [
        (index, convert) for index, field in enumerate(fields) if (convert := _conversion(field, using)) is not None
    ]

    def parameters(entry: AuditLog) -> list[Any]:
        row = list(values(entry))
        for index, convert in conversions:
            row[index] = convert(row[index])
        return row

    return parameters


@lru_cache(maxsize=32)
def _statement(using: str, rows: int = 1, normalised: bool = True) -> _Statement:
    """INSERT of ``rows`` entries, returning for each its id (first) and, if ``normalised``, the columns the
    database may normalise."""
    connection = connections[using]
    qn = connection.ops.quote_name
    returned = tuple(
        field
        for field in AuditLog._meta.concrete_fields
        if field.primary_key or (normalised and field in (*_JSON_FIELDS, *_ADDRESS_FIELDS))
    )
    values = ", ".join([f"({', '.join(['%s'] * len(_SENT))})"] * rows)
    sql = (
        f"INSERT INTO {qn(AuditLog._meta.db_table)} ({', '.join(qn(field.column) for field in _SENT)}) "
        f"VALUES {values} RETURNING {', '.join(qn(field.column) for field in returned)}"
    )
    converters = tuple(
        (field, tuple(connection.ops.get_db_converters(field.cached_col)) + tuple(field.get_db_converters(connection)))
        for field in returned
    )
    return _Statement(sql, _parameters(_SENT, using), converters)


def _has_float(value: Any) -> bool:
    """Whether JSON ``value`` holds a float at any depth. Scalars are checked in their container's loop rather than
    by a call each: this runs on every write, and the calls were most of its cost."""
    if isinstance(value, dict):
        items = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return isinstance(value, float)
    for item in items:
        if isinstance(item, float) or (isinstance(item, (dict, list)) and _has_float(item)):
            return True
    return False


def _stored_as_sent(entry: AuditLog) -> bool:
    """Whether every value of ``entry`` reads back from the database exactly as it was sent: no address, and no
    float in its JSON (the only JSON values jsonb writes in a form of its own; text, integers, booleans and
    nulls come back as they went)."""
    return all(getattr(entry, field.attname) is None for field in _ADDRESS_FIELDS) and not any(
        _has_float(getattr(entry, field.attname)) for field in _JSON_FIELDS
    )


class _Cursor(psycopg.Cursor):
    """A cursor that prepares every statement it runs (``prepare``: True, once per connection; psycopg keeps the
    names), or never, not even one prepared before (False: the log then has the statement's text), or as the
    connection says (None)."""

    def __init__(self, connection: psycopg.Connection, *, prepare: bool | None) -> None:
        super().__init__(connection)
        self._prepare = prepare

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None):
        return super().execute(query, params, prepare=self._prepare, binary=binary)


def bound_cursor(using: str, *, prepared: bool = False) -> AbstractContextManager[Any]:
    """A cursor of ``using`` with server-side parameter binding on PostgreSQL (Django's own cursors bind on the
    client unless the whole project opts in), and with ``prepared`` its statements prepared (for those that run
    on every write; ``AUDIT_PREPARED_STATEMENTS``). Other backends: their usual cursor.

    While Django logs queries or runs execute wrappers (tests counting queries, debug tools), the cursor is
    wrapped as Django wraps its own. Otherwise it runs the statement with what that wrapper would do around it
    (refusing a broken transaction, raising Django's database errors), without its cost on every write.
    """
    return _bound_cursor(connections[using], prepared=prepared)


@contextmanager
def _bound_cursor(connection: BaseDatabaseWrapper, *, prepared: bool) -> Iterator[Any]:
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    # What Django's ``cursor()`` does before it hands out a cursor.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = connection.connection
    prepared = prepared and conf.prepared_statements()
    if prepared and raw.prepare_threshold is None:
        # Django turns psycopg's automatic preparing off (None); a threshold no statement reaches keeps it off
        # while allowing the statements asked for here.
        raw.prepare_threshold = 2**31 - 1
    if connection.queries_logged or connection.execute_wrappers:
        # Not prepared while queries are logged: psycopg keeps no text of a prepared statement for the log.
        cursor = _Cursor(raw, prepare=False if connection.queries_logged else prepared or None)
        wrapped = connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)
        with wrapped:
            yield wrapped
        return
    connection.validate_no_broken_transaction()
    cursor = _Cursor(raw, prepare=prepared or None)
    with connection.wrap_database_errors, cursor:
        yield cursor


# Where each committed field is among the values sent, and whether it was sent as JSON text.
_SENT_INDEX = {field.attname: index for index, field in enumerate(_SENT)}
_COMMITTED_SENT = tuple(
    (name, _SENT_INDEX[name], name in {field.attname for field in _JSON_FIELDS})
    for name in COMMITTED_FIELDS
    if name != "id"
)


@dataclass(frozen=True, slots=True)
class SentEntry:
    """The values an INSERT sent for one entry (PostgreSQL), which the database stored as they are: text, numbers,
    times, bytes and JSON as its canonical text, none of which a caller can change."""

    pk: int
    values: tuple[Any, ...]  # in the order of the columns sent

    @property
    def salt(self) -> bytes:
        return self.values[_SENT_INDEX["salt"]]

    def personal_commitments(self) -> dict[str, str] | None:
        text = self.values[_SENT_INDEX["personal_commitments"]]
        return None if text is None else json.loads(text)

    def committed_fields(self) -> dict[str, Any]:
        """``audit.sealing.committed_fields`` of the entry as stored, for hashing: JSON as the canonical text that
        was sent, which hashes as the value it holds (no float in it, see ``_stored_as_sent``)."""
        fields: dict[str, Any] = {"id": self.pk}
        for name, index, is_json in _COMMITTED_SENT:
            value = self.values[index]
            fields[name] = CanonicalJson(value) if is_json and value is not None else value
        return fields


def insert_entries(entries: Sequence[AuditLog], using: str) -> list[SentEntry | None]:
    """Insert ``entries`` (unsaved) with multi-row statements; afterwards each holds its id and values as stored.

    Returns, for each entry, what its INSERT sent if the database stores exactly that (PostgreSQL; None otherwise):
    the entry's digest can be taken from it later, whatever is done to the entry object meanwhile.
    """
    connection = connections[using]
    keeps_sent = connection.vendor == "postgresql"
    per_statement = ROWS_PER_INSERT
    if connection.features.max_query_params:
        per_statement = min(per_statement, connection.features.max_query_params // _COLUMNS_SENT)
    sent: list[SentEntry | None] = []
    for start in range(0, len(entries), per_statement):
        chunk = entries[start : start + per_statement]
        as_sent = [_stored_as_sent(entry) for entry in chunk]
        statement = _statement(using, len(chunk), not all(as_sent))
        rows_sent = [statement.parameters(entry) for entry in chunk]
        # One prepared statement per connection for the single entry of ``record``; a bulk statement of each
        # size would be one more.
        with _bound_cursor(connection, prepared=len(chunk) == 1) as cursor:
            cursor.execute(statement.sql, [value for row in rows_sent for value in row])
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
        sent.extend(
            SentEntry(entry.pk, tuple(values)) if keeps_sent and stored else None
            for entry, values, stored in zip(chunk, rows_sent, as_sent, strict=True)
        )
    return sent
