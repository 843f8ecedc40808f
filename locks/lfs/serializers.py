from typing import Any

from rest_framework import serializers

from ..models import FileLock


def lock_json(lock: FileLock) -> dict[str, Any]:
    """A lock as the client reads it: a URL-safe string id and an RFC 3339 time with offset."""
    return {
        "id": str(lock.pk),
        "path": lock.path,
        "locked_at": lock.locked_at.isoformat(),
        "owner": {"name": lock.owner.get_username()},
    }


class RefSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class CreateLockSerializer(serializers.Serializer):
    path = serializers.CharField(max_length=4096, trim_whitespace=False)
    ref = RefSerializer(required=False)


class ListLocksSerializer(serializers.Serializer):
    path = serializers.CharField(max_length=4096, required=False, trim_whitespace=False)
    id = serializers.CharField(max_length=32, required=False)
    cursor = serializers.CharField(max_length=32, required=False)
    limit = serializers.IntegerField(min_value=1, required=False)
    refspec = serializers.CharField(max_length=255, required=False, allow_blank=True)


class VerifyLocksSerializer(serializers.Serializer):
    ref = RefSerializer(required=False)
    cursor = serializers.CharField(max_length=32, required=False, allow_blank=True)
    limit = serializers.IntegerField(min_value=1, required=False)


class UnlockSerializer(serializers.Serializer):
    force = serializers.BooleanField(required=False, default=False)
    ref = RefSerializer(required=False)
