"""Console columns for text a caller typed: shown with its control characters as escape codes."""

from collections.abc import Callable
from typing import Any

from django.contrib import admin

from .text import printable


def text_column(field: str, *, description: str | None = None, sortable: bool = False) -> Callable[[Any, Any], str]:
    """A ModelAdmin display method for ``field``, e.g. ``path_text = text_column("path", sortable=True)``."""

    @admin.display(description=description or field.replace("_", " "), ordering=field if sortable else None)
    def column(model_admin: Any, obj: Any) -> str:
        return printable(getattr(obj, field))

    return column
