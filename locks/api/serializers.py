from rest_framework import serializers

from ..models import FileLock


class LockSerializer(serializers.ModelSerializer):
    repository = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = FileLock
        fields = ["id", "repository", "path", "owner", "ref_name", "locked_at", "reason"]
        read_only_fields = fields


class CheckoutInputSerializer(serializers.Serializer):
    repository = serializers.SlugField(max_length=100)
    path = serializers.CharField(max_length=4096, trim_whitespace=False)
    ref_name = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class ForceCheckinInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, allow_blank=True, trim_whitespace=True)


class LockFilterSerializer(serializers.Serializer):
    repository = serializers.SlugField(max_length=100, required=False, default="")
    path = serializers.CharField(max_length=4096, required=False, default="", trim_whitespace=False)
    owner = serializers.CharField(max_length=150, required=False, default="")
