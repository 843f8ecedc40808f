"""Escaping of stored text for output: control characters are data, never terminal or log commands (CWE-117)."""

import datetime as dt
import re

# C0, DEL and C1 controls, the line and paragraph separators, and the bidirectional controls that let text show in
# another order than it is stored ("Trojan Source", CVE-2021-42574). The zero-width joiner stays: emoji need it.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    r"""``"a\nb"`` -> ``"a\\nb"``: newlines, escapes and other control characters shown as their escape codes."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def iso_utc(moment: dt.datetime | None, *, timespec: str = "seconds") -> str:
    """``2026-11-23T17:18:43Z``: the time in UTC as ISO 8601 with its offset, for people and for outputs alike."""
    if moment is None:
        return ""
    return moment.astimezone(dt.UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
