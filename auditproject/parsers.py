"""The JSON every API endpoint reads: text that is valid Unicode, or a 400 naming where it is not."""

from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def lone_surrogate_at(value: Any, path: str = "") -> str | None:
    """Where the first lone surrogate sits, as ``events[0].meta.note``; a bad key is named by its object."""
    if isinstance(value, str):
        return path if _has_lone_surrogate(value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if _has_lone_surrogate(key):
                return path
            found = lone_surrogate_at(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = lone_surrogate_at(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


class UnicodeJSONParser(JSONParser):
    r"""A lone surrogate (``"\ud800"``) is valid JSON but no text a database can store; refused here, it never
    reaches a serializer, a service or the database as a 500."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping | None = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        where = lone_surrogate_at(data)
        if where is not None:
            field = f"{where}: " if where else ""
            raise ParseError(f"{field}Contains a lone surrogate, which is not valid Unicode text.")
        return data
