from typing import Any

from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.models import Permission
from django.db.models import Q

_CACHE = "_rbac_role_perm_cache"


def role_permissions(user: Any) -> set[str]:
    """``app_label.codename`` of every permission the user holds through a role, directly or through a group."""
    if not user.is_active or user.is_anonymous:
        return set()
    if not hasattr(user, _CACHE):
        rows = (
            Permission.objects.filter(Q(rbac_roles__users=user) | Q(rbac_roles__groups__user=user))
            .values_list("content_type__app_label", "codename")
            .distinct()
        )
        setattr(user, _CACHE, {f"{app_label}.{codename}" for app_label, codename in rows})
    return getattr(user, _CACHE)


def forget_role_permissions(user: Any) -> None:
    """Drop the cached role permissions (and Django's own caches) after the user's roles changed."""
    for name in (_CACHE, "_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(name, None)


class RoleBackend(BaseBackend):
    """Makes ``has_perm`` and ``get_all_permissions`` see the permissions of the user's roles.

    Authenticates nobody: ModelBackend does that. Object permissions are django-guardian's.
    """

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if obj is not None:
            return set()
        return role_permissions(user_obj)

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        # BaseBackend has no has_module_perms: without it the admin hides, and refuses, the index of an app whose
        # rights a user holds only through roles.
        return any(perm.split(".", 1)[0] == app_label for perm in self.get_all_permissions(user_obj))
