"""One error shape for the whole API: ``{"message", "code", "errors"?}``.

``message`` is a sentence a person can act on and names the offending field; ``errors`` keeps DRF's per-field
detail for programs.
"""

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, views
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error

from audit.exceptions import InvalidAuditEntry


class ApplicationError(Exception):
    """A domain error that knows its HTTP status and a stable code; services raise it, the handler renders it."""

    status_code = 400
    code = "error"

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class Conflict(exceptions.APIException):
    status_code = 409
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


def first_error_message(errors: Any, path: str = "") -> str:
    if isinstance(errors, dict):
        for key, value in errors.items():
            if isinstance(key, int) or str(key).isdigit():
                # DRF keys the errors of a list's items by position.
                return first_error_message(value, f"{path}[{key}]")
            name = key if key != "non_field_errors" else ""
            return first_error_message(value, f"{path}.{name}" if path and name else name or path)
    if isinstance(errors, list) and errors:
        if isinstance(errors[0], (dict, list)):
            for index, item in enumerate(errors):
                if item:
                    return first_error_message(item, f"{path}[{index}]")
        return f"{path}: {errors[0]}" if path else str(errors[0])
    return f"{path}: {errors}" if path else str(errors)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ObjectDoesNotExist):
        # A row that went away between the view's lookup and the service's.
        exc = exceptions.NotFound(str(exc))
    if isinstance(exc, ApplicationError):
        body = {"message": exc.message, "code": exc.code}
        if exc.extra:
            body["extra"] = exc.extra
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, InvalidAuditEntry):
        exc = exceptions.ValidationError({"non_field_errors": [str(exc)]})
    response = views.exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"message": first_error_message(data), "code": "invalid", "errors": data}
    elif isinstance(data, dict) and "detail" in data:
        detail = data["detail"]
        response.data = {"message": str(detail), "code": getattr(detail, "code", "error")}
    return response
