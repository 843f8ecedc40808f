"""Shared by the retention and privacy commands: who acts (``--as``), whom it is about, how dates are read."""

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from audit.subject_access import find_subject
from audit.text import printable


def officer(username: str) -> Any:
    """The active user named ``--as``. The shell account running the command is trusted to say who it is, as with
    any management command; officers without shell access use the admin."""
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(printable(f"--as {username}: no active user of that name"))
    return user


def subject(user: str) -> Any:
    """The data subject named on the command line, by username or id."""
    found = find_subject(user)
    if found is None:
        raise CommandError(printable(f"No user {user!r} (by username or id)."))
    return found


def date_argument(name: str, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(printable(f"{name} {value}: not a date (YYYY-MM-DD)")) from exc


def datetime_argument(name: str, value: str | None) -> dt.datetime | None:
    """A date (midnight UTC) or an ISO 8601 time; without an offset, UTC."""
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(printable(f"{name} {value}: not a date or time (ISO 8601)")) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def error_message(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return " ".join(message for messages in exc.message_dict.values() for message in messages)
    return " ".join(exc.messages)
