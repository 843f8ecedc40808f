"""The request context of the entries recorded while a request is served.

A ContextVar (not a thread-local) so that threads and async tasks each see their own request.
"""

import contextvars
import ipaddress
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest

from . import conf

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    ip_address: str | None
    user_agent: str
    method: str = ""
    path: str = ""
    # The HttpRequest, so that the actor is read when an entry is written: DRF authenticates inside the view.
    request: HttpRequest | None = field(default=None, repr=False, compare=False)

    @property
    def user(self) -> Any:
        user = getattr(self.request, "user", None)
        return user if user is not None and user.is_authenticated else None


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("audit_request", default=None)


def current() -> RequestContext | None:
    return _current.get()


@contextmanager
def bound(context: RequestContext) -> Iterator[RequestContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_from(request: HttpRequest) -> str:
    """The caller's X-Request-ID when it is a sane token (correlation across services), else a new one."""
    given = request.headers.get("X-Request-ID", "")
    return given if _REQUEST_ID_RE.match(given) else new_request_id()


def _in_networks(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: list[str]) -> bool:
    for network in networks:
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue
    return False


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The peer address, or the nearest untrusted address of X-Forwarded-For when the peer is a trusted proxy.

    X-Forwarded-For is read right to left: each trusted proxy appends the address it saw, so the first untrusted
    address from the right is the one no client could forge.
    """
    peer = _parse_ip(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return None
    proxies = conf.trusted_proxies()
    if not proxies or not _in_networks(peer, proxies):
        return str(peer)
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    candidate = peer
    for hop in reversed(hops):
        address = _parse_ip(hop)
        if address is None:
            break
        candidate = address
        if not _in_networks(address, proxies):
            break
    return str(candidate)


def from_request(request: HttpRequest) -> RequestContext:
    return RequestContext(
        request_id=request_id_from(request),
        ip_address=client_ip(request),
        user_agent=request.headers.get("User-Agent", "")[:1000],
        method=request.method or "",
        path=request.path[:1000],
        request=request,
    )
