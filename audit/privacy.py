"""Personal fields of audit entries encrypted per data subject, so that destroying one key erases a person from
the trail (GDPR Art. 17) while the hash chain stays verifiable.

The subject of an entry is its actor (a user). Their label, IP address, user agent and the ``meta`` keys of
``AUDIT_PERSONAL_META_KEYS`` are stored only as AES-256-GCM ciphertext under the subject's key (``personal``), with a
salted commitment over each plaintext value kept in the clear and covered by the chain:

- ``actor_label``, ``ip_address``, ``user_agent``: their columns stay empty, and their commitments
  (``personal_commitments``) take their place in the entry's digest;
- a personal ``meta`` key: its value in ``meta`` becomes ``[PERSONAL <commitment>]``, hashed with the rest of
  ``meta`` as stored.

While the key exists, ``audit_verify`` decrypts and recomputes these commitments (a changed ciphertext is caught);
once it is destroyed, the commitments alone vouch for the entry, as for a field withheld from a FOIA release.
"""

import json
import os
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac

from . import conf
from .hashing import canonical_json, commitment, field_commitments, field_salt
from .models import AuditLog, SubjectKey
from .transactions import INDEPENDENT_ALIAS

USER_ENTITY = "User"
PERSONAL_COLUMNS: tuple[str, ...] = ("actor_label", "ip_address", "user_agent")
ERASED = "[ERASED]"
NONCE_BYTES = 12
_MARK_START, _MARK_END = "[PERSONAL ", "]"


@dataclass(frozen=True, slots=True)
class _WriterKey:
    key: bytes | None  # None once erased
    # Made once per key: setting AES-GCM up for a key cost a writer more than encrypting an entry's fields.
    cipher: AESGCM | None
    read_at: float


# Writers only, per process, by subject id. Readers always read the table, so a destroyed key is never used to show
# anything; a writer may go on encrypting under it for at most AUDIT_SUBJECT_KEY_CACHE_SECONDS, and what it writes
# then is unreadable once the process forgets the key.
_writer_keys: dict[int, _WriterKey] = {}


def meta_name(key: str) -> str:
    """The name a personal ``meta`` key is committed under (its own field salt, distinct from the columns')."""
    return f"meta.{key}"


def personal_mark(digest: str) -> str:
    return f"{_MARK_START}{digest}{_MARK_END}"


def _mark_digest(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(_MARK_START) and value.endswith(_MARK_END):
        return value[len(_MARK_START) : -len(_MARK_END)]
    return None


def ip_bucket(address: str | None) -> str | None:
    """A keyed 16-bit bucket of an address: candidates to search, never the address (see ``AuditLog.ip_bucket``)."""
    if not address:
        return None
    return salted_hmac("audit.privacy.ip_bucket", str(address), algorithm="sha256").hexdigest()[:4]


def is_protected(entry: AuditLog) -> bool:
    return entry.personal is not None


# --- keys -----------------------------------------------------------------------------------------------------------


def _cache_after_commit(subject_id: int, read: _WriterKey, using: str) -> None:
    # A key created in a transaction that rolls back must not outlive it: entries written under it could never be
    # read. on_commit runs at once outside a transaction.
    def remember() -> None:
        _writer_keys[subject_id] = read

    transaction.on_commit(remember, using=using)


def cipher_for_writing(subject_id: int, *, using: str = "default") -> AESGCM | None:
    """The cipher of the subject's key, the key made on first use; None once erased. No query while the process's
    copy is fresh."""
    cached = _writer_keys.get(subject_id)
    if cached is not None and time.monotonic() - cached.read_at < conf.subject_key_cache_seconds():
        return cached.cipher
    row = SubjectKey.objects.using(using).filter(subject_id=subject_id).only("key").first()
    if row is None and using == INDEPENDENT_ALIAS:
        # A refused or failed attempt recorded beside a caller's transaction that may be making this very key:
        # inserting it here would wait for that uncommitted row while the caller waits for this write. The entry
        # keeps its personal fields as commitments only, as after an erasure.
        return None
    if row is None:
        try:
            with transaction.atomic(using=using):
                row = SubjectKey.objects.using(using).create(subject_id=subject_id, key=os.urandom(32))
        except IntegrityError:
            # Another writer made it first: use theirs.
            row = SubjectKey.objects.using(using).get(subject_id=subject_id)
    key = bytes(row.key) if row.key is not None else None
    read = _WriterKey(key, AESGCM(key) if key else None, time.monotonic())
    _cache_after_commit(subject_id, read, using)
    return read.cipher


def forget_key(subject_id: int) -> None:
    _writer_keys.pop(subject_id, None)


def keys_for_reading(subject_ids: Iterable[int], *, using: str = "default") -> dict[int, bytes | None]:
    """The keys of many subjects in one query; a subject without a row (or an erased one) maps to None."""
    ids = set(subject_ids)
    if not ids:
        return {}
    found = dict(SubjectKey.objects.using(using).filter(subject_id__in=ids).values_list("subject_id", "key"))
    return {subject_id: bytes(found[subject_id]) if found.get(subject_id) is not None else None for subject_id in ids}


def keys_of_subjects(subject_ids: QuerySet) -> dict[int, bytes | None]:
    """The keys of the subjects a query of ids selects, in one query (for long streams such as export bundles)."""
    rows = SubjectKey.objects.filter(subject_id__in=subject_ids).values_list("subject_id", "key")
    return {subject_id: bytes(key) if key is not None else None for subject_id, key in rows}


# --- writing --------------------------------------------------------------------------------------------------------


@contextmanager
def protected(entries: Sequence[AuditLog], *, using: str = "default") -> Iterator[None]:
    """Inside the block, entries with a user actor hold their personal fields only as ciphertext and commitments:
    the form they are INSERTed in. After it, the caller's instances show the plaintext again, as ``reveal`` would.

    After the subject's erasure the ciphertext is left out: the entry is born erased, commitments only.
    """
    meta_keys = conf.personal_meta_keys()
    shown: list[tuple[AuditLog, dict[str, Any], dict[str, Any]]] = []
    for entry in entries:
        if entry.actor_id is None:
            continue
        salt = bytes(entry.salt)
        plain: dict[str, Any] = {name: getattr(entry, name) for name in PERSONAL_COLUMNS}
        commitments = field_commitments(salt, plain)
        meta = entry.meta
        personal_meta = {key: meta[key] for key in meta_keys if key in meta}
        if personal_meta:
            plain["meta"] = personal_meta
            entry.meta = {
                **meta,
                **{
                    key: personal_mark(commitment(field_salt(salt, meta_name(key)), meta_name(key), value))
                    for key, value in personal_meta.items()
                },
            }
        cipher = cipher_for_writing(entry.actor_id, using=using)
        nonce = os.urandom(NONCE_BYTES)
        entry.personal = nonce + cipher.encrypt(nonce, canonical_json(plain), salt) if cipher else b""
        entry.personal_commitments = commitments
        entry.ip_bucket = ip_bucket(entry.ip_address)
        entry.actor_label, entry.ip_address, entry.user_agent = "", None, ""
        shown.append((entry, plain, meta))
    try:
        yield
    finally:
        for entry, plain, meta in shown:
            entry.actor_label, entry.ip_address, entry.user_agent = (plain[name] for name in PERSONAL_COLUMNS)
            entry.meta = meta


# --- reading --------------------------------------------------------------------------------------------------------


def decrypt(entry: AuditLog, key: bytes) -> dict[str, Any]:
    """The personal values of ``entry``; InvalidTag if the ciphertext was changed or belongs to another entry."""
    data = bytes(entry.personal)
    return json.loads(AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], bytes(entry.salt)))


@dataclass(frozen=True)
class Personal:
    """What can be read of an entry's personal fields: the values, or None where the key is gone."""

    values: dict[str, Any] | None

    @property
    def erased(self) -> bool:
        return self.values is None


def recent_keys(subject_ids: Iterable[int], *, using: str = "default") -> dict[int, bytes | None]:
    """``keys_for_reading`` that takes what this process's writers hold (see ``_writer_keys``) and queries the rest.

    Only for the scan that runs after every commit (anomaly rules): it may, for the cache's lifetime, still decrypt
    with a key another process has just destroyed. Nothing shown to a person reads keys this way.
    """
    ids = set(subject_ids)
    now, fresh = time.monotonic(), conf.subject_key_cache_seconds()
    known = {pk: _writer_keys[pk].key for pk in ids if pk in _writer_keys and now - _writer_keys[pk].read_at < fresh}
    return {**keys_for_reading(ids - known.keys(), using=using), **known}


def personal_of(
    entries: Iterable[AuditLog], *, using: str = "default", after_commit_scan: bool = False
) -> dict[int, Personal]:
    """The personal fields of the protected ``entries``, by entry id; one query for all their keys (none for the
    keys the writers hold, in the ``after_commit_scan``)."""
    protected = [entry for entry in entries if is_protected(entry)]
    subject_ids = {entry.actor_id for entry in protected}
    keys = recent_keys(subject_ids, using=using) if after_commit_scan else keys_for_reading(subject_ids, using=using)
    return {entry.pk: personal_with(entry, keys) for entry in protected}


def personal_with(entry: AuditLog, keys: Mapping[int, bytes | None]) -> Personal | None:
    """``entry``'s personal fields with keys already read; None if the entry has none encrypted."""
    if not is_protected(entry):
        return None
    key = keys.get(entry.actor_id)
    if key is None or not entry.personal:
        return Personal(None)
    try:
        return Personal(decrypt(entry, key))
    except InvalidTag:
        return Personal(None)  # audit_verify names the entry; a reader sees it as unreadable


def reveal(entries: Iterable[AuditLog], *, using: str = "default") -> None:
    """Put the personal fields back on the entries for showing them (never for hashing: see ``released_fields``):
    the plaintext, or ``[ERASED]`` once the key is destroyed. One query for the keys of all entries."""
    entries = list(entries)
    found = personal_of(entries, using=using)
    for entry in entries:
        personal = found.get(entry.pk)
        if personal is None:
            continue
        values = personal.values
        for name in PERSONAL_COLUMNS:
            setattr(entry, name, ERASED if values is None else values.get(name))
        if any(_mark_digest(value) for value in entry.meta.values()):
            shown = (values or {}).get("meta", {})
            entry.meta = {
                key: (shown.get(key, ERASED) if _mark_digest(value) else value) for key, value in entry.meta.items()
            }


def revealed(entries: Iterable[AuditLog], *, chunk: int = 500) -> Iterator[AuditLog]:
    """``reveal`` over a long stream, a chunk at a time: one key query per chunk, memory flat."""
    batch: list[AuditLog] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) >= chunk:
            reveal(batch)
            yield from batch
            batch = []
    reveal(batch)
    yield from batch


def released_fields(
    entry: AuditLog, fields: Mapping[str, Any], personal: Personal | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The committed fields of a bundle record, and the commitments of the erased ones.

    While the key exists the personal columns are released with their plaintext (their commitments are over it);
    once it is gone they are withheld and accounted for by their stored commitments. Personal ``meta`` keys stay as
    their ``[PERSONAL …]`` marks either way: that is the form ``meta`` is hashed in.
    """
    if personal is None:
        return dict(fields), {}
    if personal.erased:
        return dict(fields), dict(entry.personal_commitments or {})
    return {**fields, **{name: personal.values.get(name) for name in PERSONAL_COLUMNS}}, {}


def subjects_of(entries: Iterable[AuditLog]) -> list[int]:
    """The users whose data ``entries`` show: their actors, and the users they are about. An AUDIT.VIEW or
    AUDIT.EXPORT entry records them, so that a subject-access export can say who consulted a person's data."""
    subjects = set()
    for entry in entries:
        if entry.actor_id is not None:
            subjects.add(entry.actor_id)
        if (account := _account_of(entry.entity, entry.entity_id)) is not None:
            subjects.add(account)
    return sorted(subjects)


def _account_of(entity: str, entity_id: str) -> int | None:
    """The user whose account an entry is about (entity ``User`` with their id), if it is about one."""
    return int(entity_id) if entity == USER_ENTITY and entity_id.isascii() and entity_id.isdigit() else None


def subjects_released(entry: AuditLog, withheld: Collection[str]) -> set[int]:
    """``subjects_of`` for one entry of a redacted release (an export bundle): only the users that a field it
    releases names. An actor whose id and label are both withheld was not shown."""
    subjects = set()
    if entry.actor_id is not None and not {"actor_id", "actor_label"} <= set(withheld):
        subjects.add(entry.actor_id)
    if "entity_id" not in withheld and (account := _account_of(entry.entity, entry.entity_id)) is not None:
        subjects.add(account)
    return subjects


def subjects_in(entries: QuerySet[AuditLog]) -> list[int]:
    """``subjects_of`` for a whole selection, in two queries of distinct values (an export's rows are streamed)."""
    entries = entries.order_by().select_related(None)
    actors = set(entries.filter(actor_id__isnull=False).values_list("actor_id", flat=True).distinct())
    about = entries.filter(entity=USER_ENTITY).values_list("entity_id", flat=True).distinct()
    return sorted(actors | {account for pk in about if (account := _account_of(USER_ENTITY, pk)) is not None})


# --- verifying ------------------------------------------------------------------------------------------------------


def findings(entries: Iterable[AuditLog], *, using: str = "default") -> dict[int, str]:
    """Protected entries whose stored personal data no longer matches what the chain covers, by entry id.

    With the key: the ciphertext must decrypt and its values must give the committed columns and ``meta`` marks.
    Always: the plain personal columns must stay empty (the digest does not cover them, so a value there is an
    addition nobody could vouch for).
    """
    entries = [entry for entry in entries if is_protected(entry)]
    keys = keys_for_reading({entry.actor_id for entry in entries}, using=using)
    problems: dict[int, str] = {}
    for entry in entries:
        if entry.actor_label or entry.ip_address or entry.user_agent:
            problems[entry.pk] = "a personal field holds a value outside its ciphertext"
            continue
        key = keys.get(entry.actor_id)
        if key is None or not entry.personal:
            continue
        try:
            values = decrypt(entry, key)
        except InvalidTag:
            problems[entry.pk] = "the personal fields' ciphertext was changed"
            continue
        salt = bytes(entry.salt)
        expected = {name: commitment(field_salt(salt, name), name, values.get(name)) for name in PERSONAL_COLUMNS}
        marks = {key_: _mark_digest(value) for key_, value in entry.meta.items() if _mark_digest(value)}
        decrypted_marks = {
            key_: commitment(field_salt(salt, meta_name(key_)), meta_name(key_), value)
            for key_, value in values.get("meta", {}).items()
        }
        if expected != entry.personal_commitments or marks != decrypted_marks:
            problems[entry.pk] = "the personal fields' ciphertext does not match their commitments"
        elif entry.ip_bucket != ip_bucket(values.get("ip_address")):
            problems[entry.pk] = "the IP address bucket does not match the encrypted address"
    return problems


# --- erasure --------------------------------------------------------------------------------------------------------


def destroy_key(subject_id: int) -> None:
    """Destroy the subject's key; a row without one stays, so that later entries are born erased.

    Callers own the transaction and the audit record (``audit.erasure``).
    """
    now = timezone.now()
    row, created = SubjectKey.objects.get_or_create(subject_id=subject_id, defaults={"key": None, "erased_at": now})
    if not created and row.key is not None:
        row.key = None
        row.erased_at = now
        row.save(update_fields=["key", "erased_at"])
    forget_key(subject_id)
