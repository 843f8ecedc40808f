"""Writing the audit trail: ``record`` is the one way in, ``audited`` wraps service functions with it."""

import datetime as dt
import functools
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import LazyObject
from rest_framework import exceptions as drf_exceptions
from rest_framework.request import Request as DrfRequest

from . import conf, context
from .actions import ACTION_CODE_RE
from .diff import diff, snapshot
from .exceptions import InvalidAuditEntry
from .models import AuditLog
from .privacy import protected
from .redaction import redact
from .sealing import schedule_seal_of_stored
from .selectors import unknown_actions
from .transactions import INDEPENDENT_ALIAS, in_caller_transaction
from .writing import insert_entries

logger = logging.getLogger(__name__)

Outcome = AuditLog.Outcome
F = TypeVar("F", bound=Callable[..., Any])
OUTCOMES = frozenset(Outcome.values)


# ensure_ascii=False: the limit counts UTF-8 bytes, as the API's input check does; escaped non-ASCII ("\u00e9",
# 6 bytes for a 2-byte character) made text under the limit fail here with no field named.
_ENCODER = DjangoJSONEncoder(allow_nan=False, ensure_ascii=False)

NUL = "\x00"
NUL_AS_TEXT = "\\x00"


def _without_nul(value: Any) -> Any:
    """NUL shown as the text ``\\x00``: PostgreSQL stores no NUL in text or jsonb, and an entry must never fail to
    be written because of what a caller sent. The other control characters are kept as data."""
    if isinstance(value, str):
        return value.replace(NUL, NUL_AS_TEXT)
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def _json_field(name: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    """Redacted, plain-JSON copy of ``changes`` or ``meta``: what is stored is exactly what gets hashed."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidAuditEntry(f"{name} must be a JSON object, got {type(value).__name__}")
    try:
        text = _ENCODER.encode(redact(dict(value)))
    except (TypeError, ValueError) as exc:
        raise InvalidAuditEntry(f"{name} is not JSON-serialisable: {exc}") from exc
    if len(text.encode("utf-8")) > conf.max_json_bytes():
        raise InvalidAuditEntry(f"{name} is larger than {conf.max_json_bytes()} bytes")
    # JSON escapes NUL wherever it is, keys included: without the escape in the text there is none to replace.
    value = json.loads(text)
    return _without_nul(value) if "\\u0000" in text else value


def _bounded(name: str, value: object, max_length: int) -> str:
    text = "" if value is None else _without_nul(str(value))
    if len(text) > max_length:
        raise InvalidAuditEntry(f"{name} is longer than {max_length} characters")
    return text


# Where a user object keeps its sorted permissions, with the permission cache of Django's backends they came from.
_KEPT_PERMS = "_audit_perms_snapshot"


def perms_snapshot(actor: Any) -> dict[str, Any]:
    """The actor's effective permissions as ``app_label.codename``, at the time of the action.

    Django's backends keep a user's permissions on the user object (``_perm_cache``) until something drops them
    (``rbac.backends.forget_role_permissions`` after a change of roles); the sorted list is kept beside them, as
    long as they are, so that the permissions an entry records are those its checks saw.
    """
    if actor is None:
        return {"perms": []}
    if actor.is_superuser:
        return {"perms": ["*"], "superuser": True}
    if not actor.is_active:
        return {"perms": sorted(actor.get_all_permissions())}  # none, whatever a cache still holds
    # ``request.user`` is a lazy wrapper, set up by now: the caches are on the user it wraps.
    state = vars(actor._wrapped if isinstance(actor, LazyObject) else actor)
    kept = state.get(_KEPT_PERMS)
    if kept is None or kept[0] is None or kept[0] is not state.get("_perm_cache"):
        perms = sorted(actor.get_all_permissions())  # fills ``_perm_cache`` if the user is active
        kept = state[_KEPT_PERMS] = (state.get("_perm_cache"), perms)
    return {"perms": list(kept[1])}


def _context_for(request: HttpRequest | None) -> context.RequestContext | None:
    bound = context.current()
    # DRF passes its Request wrapper (e.g. to authenticate(), hence to the auth signals): use the HttpRequest inside.
    # Reading the wrapper's ``user`` while it is still authenticating would re-enter authentication without end.
    request = request._request if isinstance(request, DrfRequest) else request
    if request is None or (bound is not None and bound.request is request):
        return bound
    return context.from_request(request)


def _alias_for_independent_write(using: str) -> str:
    if not in_caller_transaction(using):
        return using
    if connections[using].vendor == "sqlite":
        # SQLite has one writer: a second connection would wait for the caller's own write lock. The entry joins
        # the caller's transaction instead; services own their transactions, so this only happens when a caller
        # nests services in a transaction of its own.
        return using
    return INDEPENDENT_ALIAS


@dataclass(frozen=True)
class EventSpec:
    """One event to record: everything a caller may say about it. The recorder adds time, actor and context."""

    action: str
    entity: str = ""
    entity_id: object = ""
    outcome: str = Outcome.SUCCESS
    changes: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] | None = None
    on_behalf_of: str = ""
    client_ip: str | None = None
    occurred_at: dt.datetime | None = None


def _check_actions(codes: Iterable[str]) -> None:
    malformed = sorted(code for code in codes if not ACTION_CODE_RE.match(code))
    unknown = sorted(unknown_actions(codes)) if not malformed else []
    if malformed or unknown:
        raise InvalidAuditEntry(f"action {(malformed or unknown)[0]!r} is not a registered ENTITY.OPERATION code")


def _acting_user(actor: Any, ctx: context.RequestContext | None) -> Any:
    if actor is not None and not actor.is_authenticated:
        actor = None
    if actor is None and ctx is not None:
        actor = ctx.user
    return actor


# Model.__init__ takes values in the order of the fields several times faster than by keyword; every write makes one.
_ENTRY_ATTNAMES = tuple(field.attname for field in AuditLog._meta.concrete_fields)
_ACTOR = AuditLog._meta.get_field("actor")
# Every field but the actor whose default is not None must be given; the others then hold their default.
_GIVEN = frozenset(
    field.attname for field in AuditLog._meta.concrete_fields if field is not _ACTOR and field.get_default() is not None
)
_MAY_BE_GIVEN = frozenset(_ENTRY_ATTNAMES) - {_ACTOR.attname}


def _new_entry(actor: Any, **values: Any) -> AuditLog:
    """``AuditLog(actor=actor, **values)``, for ``values`` of every field with a default other than None."""
    names = values.keys()
    if not _GIVEN <= names <= _MAY_BE_GIVEN:
        wrong = sorted((_GIVEN - names) | (names - _MAY_BE_GIVEN))
        raise TypeError(f"an entry needs every field with a default and no other name: {wrong[0]!r}")
    entry = AuditLog(*[values.get(name) for name in _ENTRY_ATTNAMES])
    entry.actor_id = actor.pk if actor is not None else None
    _ACTOR.set_cached_value(entry, actor)  # ``entry.actor`` without a query, as the keyword would have it
    return entry


def _check_occurred_at(value: dt.datetime) -> None:
    if timezone.is_naive(value):
        raise InvalidAuditEntry("occurred_at must carry a time zone")
    try:
        # Hashed in UTC: a time at the edge of the calendar with an offset that takes it past year 9999 or before
        # year 1 could be stored but never sealed.
        value.astimezone(dt.UTC)
    except OverflowError:
        raise InvalidAuditEntry("occurred_at is out of range in UTC") from None


def _build_entry(spec: EventSpec, *, actor: Any, perms: dict[str, Any], ctx: context.RequestContext | None) -> AuditLog:
    if spec.outcome not in OUTCOMES:
        raise InvalidAuditEntry(f"outcome must be one of {', '.join(Outcome.values)}, got {spec.outcome!r}")
    if spec.occurred_at is not None:
        _check_occurred_at(spec.occurred_at)
    return _new_entry(
        actor,
        created_at=timezone.now(),
        actor_label=_without_nul(actor.get_username()) if actor is not None else "",
        action=str(spec.action),
        entity=_bounded("entity", spec.entity, 100),
        entity_id=_bounded("entity_id", spec.entity_id, 255),
        outcome=spec.outcome,
        perms_snapshot=perms,
        changes=_json_field("changes", spec.changes),
        meta=_json_field("meta", spec.meta),
        ip_address=ctx.ip_address if ctx else None,
        user_agent=_without_nul(ctx.user_agent) if ctx else "",
        request_id=ctx.request_id if ctx else "",
        on_behalf_of=_bounded("on_behalf_of", spec.on_behalf_of, 150),
        client_ip=spec.client_ip,
        occurred_at=spec.occurred_at,
        salt=os.urandom(16),
    )


def record(
    action: str,
    *,
    entity: str = "",
    entity_id: object = "",
    outcome: str = Outcome.SUCCESS,
    changes: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
    independent: bool = False,
    using: str = "default",
) -> AuditLog:
    """Write one audit entry and have it sealed once its transaction commits.

    Args:
        action: a code of the catalogue (``audit.actions.AuditAction``) or a registered code of another system.
        entity, entity_id: what the action was about (``"Role"``, ``42``).
        outcome: ``success``, ``failure`` or ``denied``.
        changes: ``{"field": {"before": x, "after": y}}``; secrets are redacted at any depth.
        meta: reason and other context; secrets are redacted at any depth.
        actor: the user who acted; defaults to the authenticated user of the current request.
        request: the request, when the caller has one that the middleware did not bind (signals).
        independent: write in a transaction of its own, so that a rollback of the caller's transaction cannot
            take the entry with it (denied and failed attempts).

    Raises:
        InvalidAuditEntry: bad code, outcome, sizes or values that are not JSON. Inside the caller's
            transaction, any error here rolls the audited change back with it (fail closed).
    """
    spec = EventSpec(
        action=str(action), entity=entity, entity_id=entity_id, outcome=outcome, changes=changes, meta=meta
    )
    _check_actions([spec.action])
    ctx = _context_for(request)
    actor = _acting_user(actor, ctx)
    entry = _build_entry(spec, actor=actor, perms=perms_snapshot(actor), ctx=ctx)
    alias = _alias_for_independent_write(using) if independent else using
    # What a background sealer chains is taken inside ``protected``: the entry as stored, encrypted.
    with protected([entry], using=alias), _around_one_insert(alias):
        schedule_seal_of_stored([entry], alias, insert_entries([entry], alias))
    return entry


def _around_one_insert(using: str) -> AbstractContextManager[Any]:
    """What ``record``'s single INSERT runs in.

    In autocommit, no transaction: the statement commits by itself, and a transaction around it would cost two more
    round trips to the database (BEGIN and COMMIT) for every entry written outside one (logins, console views,
    refusals on the independent connection). Its seal is then handed over at once, as after a commit.

    Inside the caller's transaction, an atomic block without a savepoint: if the INSERT fails, that transaction
    can only roll back; a savepoint would let a caller catch the error and commit unaudited.
    """
    connection = connections[using]
    if connection.get_autocommit() and not connection.in_atomic_block:
        return _dropped_if_broken(connection)
    return transaction.atomic(using=using, savepoint=False)


@contextmanager
def _dropped_if_broken(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """Drop a connection that an error of the block left unusable (a backend that died), as an atomic block does
    when its rollback fails: the next write then opens a new one instead of failing on the dead one."""
    try:
        yield
    except DatabaseError:
        if not connection.is_usable():
            connection.close()
        raise


def record_many(
    specs: Sequence[EventSpec], *, actor: Any = None, request: HttpRequest | None = None, using: str = "default"
) -> list[AuditLog]:
    """Write many entries by one actor in one transaction, with multi-row INSERTs: all of them or none.

    The same validation, redaction, context and sealing as ``record``; the bulk path for batch jobs and for
    events submitted by other systems.
    """
    _check_actions({spec.action for spec in specs})
    ctx = _context_for(request)
    actor = _acting_user(actor, ctx)
    perms = perms_snapshot(actor)
    entries = [_build_entry(spec, actor=actor, perms=perms, ctx=ctx) for spec in specs]
    with protected(entries, using=using), transaction.atomic(using=using, savepoint=False):
        schedule_seal_of_stored(entries, using, insert_entries(entries, using))
    return entries


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return str(exc)


def _failure_outcome(exc: BaseException) -> str:
    # Domain errors may say themselves that they are a refusal (e.g. a lock held by someone else).
    refused = isinstance(exc, (PermissionDenied, drf_exceptions.PermissionDenied))
    if refused or getattr(exc, "audit_outcome", "") == Outcome.DENIED:
        return Outcome.DENIED
    return Outcome.FAILURE


def audited(
    action: str,
    *,
    entity: str,
    pre_fetch: Callable[..., Any] | None = None,
    diff_keys: Sequence[str] = (),
    snapshot_with: Callable[[Any], dict[str, Any]] | None = None,
    meta_from: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None,
    deletes: bool = False,
) -> Callable[[F], F]:
    """Record ``action`` for every call of a service function, with a before/after diff.

    ``pre_fetch`` receives the service's arguments and returns the object as it is before the change (``None`` to
    create); the service returns the object after the change. ``diff_keys`` are the attributes compared (related
    managers as sorted primary keys), or ``snapshot_with(obj)`` builds the compared dict itself. The actor is the
    service's ``actor`` keyword argument, and a ``reason`` keyword argument lands in ``meta.reason``;
    ``meta_from(before_obj, kwargs)`` adds context of its own (on success and on failure).

    With ``deletes``, the entry (with the full snapshot) is written before the service runs: the record of a
    deletion exists before the row goes.

    The change and its entry commit together. If the service raises, the change is rolled back, a ``denied``
    (permission errors) or ``failure`` entry is written in a transaction of its own, and the exception propagates.
    """

    def take(obj: Any) -> dict[str, Any] | None:
        if obj is None:
            return None
        return snapshot_with(obj) if snapshot_with else snapshot(obj, diff_keys)

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            actor = kwargs.get("actor")
            meta = {"reason": kwargs["reason"]} if kwargs.get("reason") else {}
            before_obj = None
            try:
                with transaction.atomic():
                    before_obj = pre_fetch(*args, **kwargs) if pre_fetch else None
                    if meta_from:
                        meta.update(meta_from(before_obj, kwargs))
                    before = take(before_obj)
                    if deletes:
                        record(
                            action,
                            entity=entity,
                            entity_id=getattr(before_obj, "pk", ""),
                            changes=diff(before, None),
                            meta=meta,
                            actor=actor,
                        )
                        return func(*args, **kwargs)
                    result = func(*args, **kwargs)
                    subject = result if result is not None else before_obj
                    record(
                        action,
                        entity=entity,
                        entity_id=getattr(subject, "pk", "") or "",
                        changes=diff(before, take(result)),
                        meta=meta,
                        actor=actor,
                    )
                return result
            except Exception as exc:
                if meta_from and before_obj is None:
                    meta.update(meta_from(None, kwargs))
                try:
                    record(
                        action,
                        entity=entity,
                        entity_id=getattr(before_obj, "pk", "") or "",
                        outcome=_failure_outcome(exc),
                        meta={**meta, "error": type(exc).__name__, "message": _error_message(exc)[:500]},
                        actor=actor,
                        independent=True,
                    )
                except Exception:
                    logger.exception("could not record the failure of %s", action)
                raise

        return wrapper  # type: ignore[return-value]

    return decorate
