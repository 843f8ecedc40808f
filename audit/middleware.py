import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from . import context
from .text import printable

request_log = logging.getLogger("audit.request")


class RequestContextMiddleware:
    """Binds the request context for the recorder and writes one structured log line per request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.monotonic()
        ctx = context.from_request(request)
        request.request_id = ctx.request_id
        with context.bound(ctx):
            response = self.get_response(request)
        response["X-Request-ID"] = ctx.request_id
        self._log(request, response, ctx, time.monotonic() - started)
        return response

    @staticmethod
    def _log(request: HttpRequest, response: HttpResponse, ctx: context.RequestContext, seconds: float) -> None:
        match = getattr(request, "resolver_match", None)
        # The route pattern, not the path: the path is caller-controlled text.
        route = match.route if match else "-"
        user = ctx.user
        request_log.info(
            "request_id=%s user_id=%s method=%s route=%s status=%s latency_ms=%.1f",
            ctx.request_id,
            user.pk if user else "-",
            printable(ctx.method),
            printable(route or "/"),
            response.status_code,
            seconds * 1000,
            extra={
                "request_id": ctx.request_id,
                "user_id": user.pk if user else None,
                "method": ctx.method,
                "route": route,
                "status": response.status_code,
                "latency_ms": round(seconds * 1000, 1),
            },
        )
