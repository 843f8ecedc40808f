"""One limit on request bodies for every endpoint, answered with 413 before any view or parser reads the body.

Django alone answers an oversized body with a 400 (``RequestDataTooBig``), and only where ``request.body`` or
``request.POST`` is read; DRF's parsers read the stream and are not limited at all.
"""

import json
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views import defaults

LFS_PREFIX = "/api/lfs/"
LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"


def max_body_bytes() -> int:
    return int(settings.REQUEST_BODY_MAX_BYTES)


def error_response(request: HttpRequest, status: int, message: str, code: str) -> HttpResponse:
    """The error in the shape the caller reads: git-lfs's ``{"message"}``, the API's ``{"message", "code"}``, text
    for the console."""
    if request.path.startswith(LFS_PREFIX):
        return HttpResponse(json.dumps({"message": message}), status=status, content_type=LFS_MEDIA_TYPE)
    if request.path.startswith("/api/"):
        body = json.dumps({"message": message, "code": code})
        return HttpResponse(body, status=status, content_type="application/json")
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def too_large(request: HttpRequest) -> HttpResponse:
    message = f"The request body is larger than the limit of {max_body_bytes()} bytes."
    return error_response(request, 413, message, "payload_too_large")


class BodySizeLimitMiddleware:
    """Refuses a body whose Content-Length is over ``REQUEST_BODY_MAX_BYTES`` (413), or that has no length at all.

    Django reads exactly Content-Length bytes: a body sent chunked, without one, would reach the view as empty, so
    it is refused (411) rather than silently dropped. A Content-Length shorter than the body truncates it to text
    that no longer parses (400 from the parser); a longer one is read as far as the body goes.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        declared = request.META.get("CONTENT_LENGTH") or ""
        if declared:
            if not declared.isdigit():
                return error_response(request, 400, "The Content-Length header is not a number of bytes.", "invalid")
            if int(declared) > max_body_bytes():
                return too_large(request)
        elif "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            message = "A request body needs a Content-Length header; chunked bodies are not accepted."
            return error_response(request, 411, message, "length_required")
        return self.get_response(request)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 400 handler, except that a body over Django's own limits is a 413 like the middleware's."""
    if isinstance(exception, RequestDataTooBig):
        return too_large(request)
    return defaults.bad_request(request, exception)
