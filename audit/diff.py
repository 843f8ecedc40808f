"""Before/after snapshots of objects and the ``changes`` an entry carries."""

import json
from collections.abc import Sequence
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder


def _plain(value: Any) -> Any:
    if hasattr(value, "all") and callable(value.all):
        # A related manager: the set of related rows, as sorted primary keys.
        value = sorted(value.all().values_list("pk", flat=True))
    elif hasattr(value, "_meta") and hasattr(value, "pk"):
        value = value.pk
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def snapshot(obj: Any, keys: Sequence[str]) -> dict[str, Any] | None:
    """The ``keys`` of ``obj`` as JSON values; ``None`` for an object that does not exist (before create or after
    delete)."""
    if obj is None:
        return None
    return {key: _plain(getattr(obj, key)) for key in keys}


def _is_flat_list(value: Any) -> bool:
    """None or a list of plain values (names, ids): those get ``added``/``removed``; lists of objects do not."""
    return value is None or (isinstance(value, list) and all(isinstance(item, (str, int)) for item in value))


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """``{"field": {"before": b, "after": a}}`` for each field that differs; lists also get ``added``/``removed``."""
    old = before or {}
    new = after or {}
    changes: dict[str, Any] = {}
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key), new.get(key)
        if before is not None and after is not None and was == now:
            continue
        change: dict[str, Any] = {"before": was, "after": now}
        if _is_flat_list(was) and _is_flat_list(now) and (was is not None or now is not None):
            was_set, now_set = set(was or []), set(now or [])
            change["added"] = sorted(now_set - was_set)
            change["removed"] = sorted(was_set - now_set)
        changes[key] = change
    return changes
