"""One chain position as it leaves the server: the released record and its proof line."""

from collections.abc import Mapping, Sequence
from typing import Any

from ..hashing import COMMITTED_FIELDS, canonical_value, commitment, field_salt
from ..privacy import ERASED
from .rules import RedactionRule
from .spreadsheet import csv_cell

CSV_COLUMNS: tuple[str, ...] = ("chain_index", *COMMITTED_FIELDS)


def applicable_rules(rules: Sequence[RedactionRule], actor_is_staff: bool) -> dict[str, RedactionRule]:
    return {rule.field: rule for rule in rules if actor_is_staff or not rule.staff_only}


def released_record(
    chain_index: int,
    fields: Mapping[str, Any],
    withheld: Mapping[str, RedactionRule],
    erased: Mapping[str, str] | None = None,
) -> dict:
    """The record as released: every committed field in its canonical form, the mark of its exemption, or
    ``[ERASED]`` for a personal field whose subject's key was destroyed (``erased``: name -> commitment)."""
    erased = erased or {}
    record: dict[str, Any] = {"chain_index": chain_index}
    for name in COMMITTED_FIELDS:
        if name in withheld:
            record[name] = withheld[name].mark
        elif name in erased:
            record[name] = ERASED
        else:
            record[name] = canonical_value(fields[name])
    return record


def proof_of_released(
    chain_index: int,
    entry_id: int,
    salt: bytes,
    fields: Mapping[str, Any],
    withheld: Mapping[str, RedactionRule],
    hash_: str,
    erased: Mapping[str, str] | None = None,
) -> dict:
    """Field salts of the released fields and commitments of the withheld ones: enough to recompute the digest,
    never enough to learn a withheld value. The entry's own salt stays on the server. An erased field has only the
    commitment stored with the entry: its value is gone with the subject's key."""
    erased = erased or {}
    salts, commitments = {}, {}
    for name in COMMITTED_FIELDS:
        salt_of_field = field_salt(salt, name)
        if name in erased:
            commitments[name] = erased[name]
        elif name in withheld:
            commitments[name] = commitment(salt_of_field, name, fields[name])
        else:
            salts[name] = salt_of_field.hex()
    return {
        "chain_index": chain_index,
        "entry_id": entry_id,
        "field_salts": salts,
        "commitments": commitments,
        "hash": hash_,
    }


def proof_of_out_of_scope(chain_index: int, digest: str, hash_: str) -> dict:
    return {"chain_index": chain_index, "digest": digest, "hash": hash_}


def csv_row(record: Mapping[str, Any]) -> list[str]:
    return [csv_cell(record[column]) for column in CSV_COLUMNS]
