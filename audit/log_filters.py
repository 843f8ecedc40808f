"""Logging filters configured in settings.LOGGING."""

import logging

from .text import printable


class EscapeControlCharacters(logging.Filter):
    r"""Escapes control characters in the formatted message, so text a caller sent (a path, a header, a username)
    cannot forge a log line with CR/LF or drive a terminal with ESC (CWE-117). Tracebacks stay multi-line: they are
    formatted by the handler after this filter, from the exception, not from the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = printable(record.getMessage())
        record.args = None
        return True
