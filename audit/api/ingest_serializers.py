"""Input of events recorded by other systems: strict, so that no server-side field can be set from outside."""

import json
from typing import Any

from rest_framework import serializers

from .. import conf
from ..actions import ACTION_CODE_RE
from ..models import AuditLog
from ..redaction import redact
from ..selectors import unknown_actions

MAX_BATCH = 1000
UNKNOWN_CODE = "unknown action code {code!r}: register it in the action catalogue first"


class JsonObjectField(serializers.DictField):
    """A JSON object of bounded size (``changes``, ``meta``)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError(f"Expected a JSON object, got {type(data).__name__}.")
        value = super().to_internal_value(data)
        # Measured as the recorder will store it: after redaction, in UTF-8.
        try:
            size = len(json.dumps(redact(value), ensure_ascii=False).encode("utf-8"))
        except UnicodeEncodeError as exc:
            # A lone surrogate ("\ud800"): valid in a JSON string, not text any database can store.
            raise serializers.ValidationError("Contains a lone surrogate, which is not valid Unicode text.") from exc
        if size > conf.max_json_bytes():
            raise serializers.ValidationError(f"Larger than {conf.max_json_bytes()} bytes ({size}).")
        return value


class EventInputSerializer(serializers.Serializer):
    action = serializers.CharField(max_length=100, help_text="A registered ENTITY.OPERATION code.")
    # Text is kept exactly as the source sent it (no trimming): the entry is the record of what it said.
    entity = serializers.CharField(max_length=100, required=False, allow_blank=True, default="", trim_whitespace=False)
    entity_id = serializers.CharField(
        max_length=255, required=False, allow_blank=True, default="", trim_whitespace=False
    )
    outcome = serializers.ChoiceField(choices=AuditLog.Outcome.choices, default=AuditLog.Outcome.SUCCESS)
    changes = JsonObjectField(required=False, default=dict, help_text='{"field": {"before": x, "after": y}}')
    meta = JsonObjectField(required=False, default=dict)
    on_behalf_of = serializers.CharField(
        max_length=150,
        required=False,
        allow_blank=True,
        default="",
        trim_whitespace=False,
        help_text="The end user, as the source names them.",
    )
    client_ip = serializers.IPAddressField(required=False, allow_null=True, default=None)
    occurred_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="When it happened at the source (ISO 8601)."
    )

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {
                        name: ["Unknown field: the server sets id, created_at, actor and the seal itself."]
                        for name in unknown
                    }
                )
        return super().to_internal_value(data)

    def validate_action(self, value: str) -> str:
        if not ACTION_CODE_RE.match(value):
            raise serializers.ValidationError("Must be an upper-case ENTITY.OPERATION code, e.g. PROVIDER.CONNECT.")
        return value


class SingleEventSerializer(EventInputSerializer):
    def validate_action(self, value: str) -> str:
        value = super().validate_action(value)
        if unknown_actions([value]):
            raise serializers.ValidationError(UNKNOWN_CODE.format(code=value))
        return value


class EventBatchSerializer(serializers.Serializer):
    events = EventInputSerializer(many=True, allow_empty=False, max_length=MAX_BATCH)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and set(data) - {"events"}:
            name = sorted(set(data) - {"events"})[0]
            raise serializers.ValidationError({name: ['Unknown field: a batch is {"events": [...]}.']})
        return super().to_internal_value(data)

    def validate_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        unknown = unknown_actions(event["action"] for event in events)
        if unknown:
            # The shape DRF gives errors of list items: keyed by position.
            raise serializers.ValidationError(
                {
                    index: {"action": [UNKNOWN_CODE.format(code=event["action"])]}
                    for index, event in enumerate(events)
                    if event["action"] in unknown
                }
            )
        return events
