"""FOIA requests (5 U.S.C. 552) and the redaction profiles their releases apply.

Imported at the end of ``audit.models`` so that both models belong to the audit app. Rows are changed only through
``audit.foia``'s services, which record every change.
"""

import datetime as dt
import json
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from .export.rules import RedactionRule, parse_rules
from .text import printable

TRACKING_NUMBER_RE = re.compile(r"^FOIA-\d{4}-\d{6}$")
# The prefix is matched with startswith against catalogue codes: upper case, dots between segments.
ACTION_PREFIX_RE = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]*)*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

DEFAULT_PROFILE_NAME = "Standard (b)(6)/(b)(7)(C)"
DEFAULT_PROFILE_DESCRIPTION = (
    "Network identifiers of everyone withheld as personal privacy (b)(6); the names and ids of staff who acted "
    "withheld as law-enforcement privacy (b)(7)(C)."
)
DEFAULT_PROFILE_RULES: tuple[dict[str, Any], ...] = (
    {"field": "ip_address", "exemption": "(b)(6)", "staff_only": False},
    {"field": "user_agent", "exemption": "(b)(6)", "staff_only": False},
    {"field": "client_ip", "exemption": "(b)(6)", "staff_only": False},
    {"field": "actor_label", "exemption": "(b)(7)(C)", "staff_only": True},
    {"field": "actor_id", "exemption": "(b)(7)(C)", "staff_only": True},
)


class RedactionProfile(models.Model):
    """A named set of redaction rules: which entry fields a release withholds, under which exemption."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    rules = models.JSONField(
        default=list,
        blank=True,
        help_text='A list of rules, e.g. [{"field": "ip_address", "exemption": "(b)(6)", "staff_only": false}].',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        # Shown in console titles, choices and messages: control characters as escape codes.
        return printable(self.name)

    def clean(self) -> None:
        self.rules = normalised_rules(self.rules)

    def redaction_rules(self) -> list[RedactionRule]:
        """The rules as ``RedactionRule`` objects, in the stored order (ValueError if the stored JSON is bad)."""
        return parse_rules(self.rules)


def normalised_rules(raw: Any) -> list[dict[str, Any]]:
    """Rules checked by ``parse_rules`` and stored in their canonical shape; a ValidationError names the bad rule.

    parse_rules iterates whatever it is given: a bare object or string would be taken apart key by key or letter
    by letter and reported as a confusing "rule 0", so the list shape is checked first.
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationError({"rules": 'Rules must be a JSON list of objects, e.g. [{"field": ..., ...}].'})
    try:
        rules = parse_rules(raw)
    except ValueError as error:
        raise ValidationError({"rules": _rule_message(str(error), raw)}) from error
    return [{"field": r.field, "exemption": r.exemption, "staff_only": r.staff_only} for r in rules]


def _rule_message(message: str, raw: list[Any]) -> str:
    # parse_rules counts from 0 and shows no value; the officer editing the JSON needs the rule itself.
    match = re.match(r"rule (\d+)", message)
    if match is None or int(match.group(1)) >= len(raw):
        return message
    index = int(match.group(1))
    rule = json.dumps(raw[index], default=str)
    return f"Rule {index + 1} of {len(raw)} {rule}: {message[match.end() :].lstrip(': ')}"


class FoiaRequest(models.Model):
    """One request under 5 U.S.C. 552: who asked for what, by when the answer is due, and what was released."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSING = "processing", "Processing"
        RELEASED = "released", "Released"
        CLOSED = "closed", "Closed"

    tracking_number = models.CharField(
        max_length=20,
        unique=True,
        editable=False,
        validators=[RegexValidator(TRACKING_NUMBER_RE, "A tracking number looks like FOIA-2026-000123.")],
    )
    requester = models.CharField(max_length=200)
    requester_email = models.EmailField(blank=True)
    description = models.TextField(help_text="The records asked for, in the requester's words.")
    received_on = models.DateField()
    # Computed by the services from received_on (20 working days): never typed in.
    due_on = models.DateField(editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    scope_actor = models.CharField(max_length=150, blank=True, help_text="Only entries by this username.")
    scope_action_prefix = models.CharField(
        max_length=100,
        blank=True,
        validators=[RegexValidator(ACTION_PREFIX_RE, "An upper-case action code or its start, e.g. LOCK. or USER.")],
        help_text='Only entries whose action starts with this, e.g. "LOCK." or "USER.LOGIN".',
    )
    scope_entity = models.CharField(
        max_length=100, blank=True, help_text='Only entries about this entity, e.g. "Role".'
    )
    scope_since = models.DateTimeField(null=True, blank=True, help_text="Entries created at or after this time.")
    scope_until = models.DateTimeField(null=True, blank=True, help_text="Entries created before this time.")
    redaction_profile = models.ForeignKey(
        RedactionProfile, on_delete=models.PROTECT, null=True, blank=True, related_name="foia_requests"
    )
    released_at = models.DateTimeField(null=True, blank=True, editable=False)
    manifest_sha256 = models.CharField(
        max_length=64,
        blank=True,
        editable=False,
        validators=[RegexValidator(SHA256_RE, "A SHA-256 in lower-case hex (64 characters).")],
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_on", "-tracking_number"]
        verbose_name = "FOIA request"
        verbose_name_plural = "FOIA requests"
        indexes = [models.Index(fields=["status", "due_on"], name="audit_foia_status_due")]

    def __str__(self) -> str:
        return self.tracking_number or printable(f"FOIA request from {self.requester}")

    def clean(self) -> None:
        if self.scope_since and self.scope_until and self.scope_since >= self.scope_until:
            raise ValidationError({"scope_until": "The end of the period must come after its start."})

    def scope_filters(self) -> dict[str, str]:
        """The scope's set filters as JSON values (times in ISO 8601 with offset): what the manifest records."""
        filters: dict[str, str] = {}
        if self.scope_actor:
            filters["actor"] = self.scope_actor
        if self.scope_action_prefix:
            filters["action_prefix"] = self.scope_action_prefix
        if self.scope_entity:
            filters["entity"] = self.scope_entity
        if self.scope_since:
            filters["since"] = _iso(self.scope_since)
        if self.scope_until:
            filters["until"] = _iso(self.scope_until)
        return filters


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat()
