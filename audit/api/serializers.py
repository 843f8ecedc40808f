from typing import Any

from rest_framework import serializers

from ..models import AuditLog, SignedDigest


class SealSerializer(serializers.Serializer):
    chain_index = serializers.IntegerField()
    hash = serializers.CharField()
    sealed_at = serializers.DateTimeField()


class AuditLogSerializer(serializers.ModelSerializer):
    seal = serializers.SerializerMethodField()

    class Meta:
        model = AuditLog
        fields = [
            "id",
            "created_at",
            "actor",
            "actor_label",
            "action",
            "entity",
            "entity_id",
            "outcome",
            "perms_snapshot",
            "changes",
            "meta",
            "ip_address",
            "user_agent",
            "request_id",
            "on_behalf_of",
            "client_ip",
            "occurred_at",
            "seal",
        ]
        read_only_fields = fields

    def get_seal(self, entry: AuditLog) -> dict[str, Any] | None:
        seal = getattr(entry, "seal", None)
        return SealSerializer(seal).data if seal is not None else None


class FindingSerializer(serializers.Serializer):
    kind = serializers.CharField()
    entry_id = serializers.IntegerField(allow_null=True)
    chain_index = serializers.IntegerField(allow_null=True)
    detail = serializers.CharField()


class VerifyReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    verified_at = serializers.DateTimeField()
    entries_checked = serializers.IntegerField()
    digests_checked = serializers.IntegerField()
    head_index = serializers.IntegerField(allow_null=True)
    head_hash = serializers.CharField(allow_null=True)
    archived_through = serializers.IntegerField(
        allow_null=True, help_text="The last chain position moved to archive segments; the walk started after it."
    )
    findings = FindingSerializer(many=True)


class SignedDigestSerializer(serializers.ModelSerializer):
    class Meta:
        model = SignedDigest
        fields = ["chain_index", "head_hash", "signed_at", "prev_signature", "signature", "key_fingerprint"]
        read_only_fields = fields
