"""Which fields an export withholds, under which exemption."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..hashing import COMMITTED_FIELDS

# The id stays: the recipient needs it to follow the chain, and it says nothing about anyone.
WITHHOLDABLE_FIELDS: tuple[str, ...] = tuple(field for field in COMMITTED_FIELDS if field != "id")


@dataclass(frozen=True)
class RedactionRule:
    """Withhold ``field`` under ``exemption`` (e.g. "(b)(6)"); with ``staff_only``, only where the actor is staff."""

    field: str
    exemption: str
    staff_only: bool = False

    @property
    def mark(self) -> str:
        return f"[REDACTED {self.exemption}]"


def parse_rules(raw: Iterable[Mapping[str, Any]]) -> list[RedactionRule]:
    """``[{"field": "ip_address", "exemption": "(b)(6)", "staff_only": false}, ...]`` to rules; ValueError if bad."""
    rules = []
    seen = set()
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ValueError(f"rule {index} must be an object")
        field, exemption = item.get("field"), item.get("exemption")
        if field not in WITHHOLDABLE_FIELDS:
            raise ValueError(f"rule {index}: field must be one of {', '.join(WITHHOLDABLE_FIELDS)}")
        if not isinstance(exemption, str) or not exemption.strip():
            raise ValueError(f"rule {index}: exemption must name the exemption, e.g. (b)(6)")
        if field in seen:
            raise ValueError(f"rule {index}: {field} has a rule already")
        seen.add(field)
        rules.append(RedactionRule(field, exemption.strip(), bool(item.get("staff_only", False))))
    return rules
