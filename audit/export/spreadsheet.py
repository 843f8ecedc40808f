"""The one way a value becomes a CSV cell, for the bundle's records.csv and the console's exports alike."""

import json
from typing import Any

from ..text import printable

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection, CWE-1236; OWASP's list).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """Text a spreadsheet shows as it is: JSON for structures, control characters escaped, a formula start
    neutralised by a leading apostrophe. The raw text is checked, so a cell opening with a tab or CR gets the
    apostrophe as well as its escape: a reader that unescapes the cell still finds no formula."""
    if value is None:
        text = ""
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    else:
        text = str(value)
    escaped = printable(text)
    return "'" + escaped if text.startswith(FORMULA_START) else escaped
