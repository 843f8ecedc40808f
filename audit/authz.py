"""The permission check every service makes before it changes anything (deny by default)."""

from typing import Any

from django.core.exceptions import PermissionDenied


def require(actor: Any, perm: str) -> None:
    """Raise PermissionDenied unless ``actor`` holds ``perm``; ``actor=None`` is the system itself."""
    if actor is not None and not actor.has_perm(perm):
        raise PermissionDenied(f"{actor.get_username()} does not have the permission {perm}")
