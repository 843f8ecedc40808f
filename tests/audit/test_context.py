"""The request context: the client address behind trusted proxies, and the one log line per request."""

import logging

import pytest
from django.test import RequestFactory

from audit.actions import AuditAction
from audit.context import client_ip
from audit.services import record
from tests.audit.read_back import read_back

REQUEST_LOGGER = "audit.request"


def _request(remote_addr: str, forwarded_for: str | None = None):
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return RequestFactory().get("/", **extra)


# --- client_ip -----------------------------------------------------------------------------------------------------


def test_forwarded_for_is_ignored_without_trusted_proxies(settings):
    """With no trusted proxy configured, X-Forwarded-For is caller-controlled text and the peer address is used."""
    settings.AUDIT_TRUSTED_PROXIES = []

    assert client_ip(_request("198.51.100.7", "203.0.113.99")) == "198.51.100.7"


def test_forwarded_for_is_ignored_when_the_peer_is_not_a_trusted_proxy(settings):
    """A peer outside AUDIT_TRUSTED_PROXIES cannot choose its recorded address through X-Forwarded-For."""
    settings.AUDIT_TRUSTED_PROXIES = ["10.0.0.1", "172.16.0.0/12"]

    assert client_ip(_request("198.51.100.7", "203.0.113.99, 10.0.0.1")) == "198.51.100.7"


def test_peer_address_is_used_when_there_is_no_forwarded_for(settings):
    """A request straight from a client carries its own address, also when proxies are configured."""
    settings.AUDIT_TRUSTED_PROXIES = ["10.0.0.1"]

    assert client_ip(_request("198.51.100.7")) == "198.51.100.7"


def test_trusted_proxy_given_as_an_address_forwards_the_client(settings):
    """A peer listed by address in AUDIT_TRUSTED_PROXIES: the client address it forwarded is used."""
    settings.AUDIT_TRUSTED_PROXIES = ["10.0.0.1"]

    assert client_ip(_request("10.0.0.1", "203.0.113.5")) == "203.0.113.5"


def test_trusted_proxy_given_as_a_network_forwards_the_client(settings):
    """A peer inside a CIDR network of AUDIT_TRUSTED_PROXIES: the client address it forwarded is used."""
    settings.AUDIT_TRUSTED_PROXIES = ["10.0.0.0/8"]

    assert client_ip(_request("10.20.30.40", "203.0.113.5")) == "203.0.113.5"


def test_rightmost_untrusted_address_is_taken(settings):
    """X-Forwarded-For is read right to left past trusted hops; addresses left of the first untrusted one are
    whatever the client claimed and are not used."""
    settings.AUDIT_TRUSTED_PROXIES = ["10.0.0.0/8", "192.168.1.1"]
    forwarded = "1.1.1.1, 203.0.113.5, 10.9.8.7, 192.168.1.1"

    assert client_ip(_request("10.0.0.1", forwarded)) == "203.0.113.5"


def test_only_trusted_hops_yield_the_leftmost_of_them(settings):
    """When every hop is a trusted proxy, the left-most (the one nearest the client) is used."""
    settings.AUDIT_TRUSTED_PROXIES = ["10.0.0.0/8"]

    assert client_ip(_request("10.0.0.1", "10.0.0.3, 10.0.0.2")) == "10.0.0.3"


def test_whitespace_and_empty_hops_are_tolerated(settings):
    """Spaces around hops and empty elements (", ,") are not addresses and are skipped."""
    settings.AUDIT_TRUSTED_PROXIES = ["10.0.0.1"]

    assert client_ip(_request("10.0.0.1", " , 203.0.113.5 ,, ")) == "203.0.113.5"


@pytest.mark.parametrize(
    "forwarded",
    [
        "not-an-address",
        "203.0.113.5, <script>alert(1)</script>",
        "203.0.113.5:8080",
        "unknown",
        "999.1.1.1",
        "\x00\n\r",
        "1" * 10_000,
    ],
)
def test_garbage_forwarded_for_falls_back_to_the_trusted_peer(settings, forwarded):
    """An unparseable right-most hop does not crash; nothing left of it is believed, so the proxy's own address is
    recorded."""
    settings.AUDIT_TRUSTED_PROXIES = ["10.0.0.1"]

    assert client_ip(_request("10.0.0.1", forwarded)) == "10.0.0.1"


def test_garbage_left_of_the_client_address_is_irrelevant(settings):
    """Garbage the client put in front of the address the proxy appended does not matter."""
    settings.AUDIT_TRUSTED_PROXIES = ["10.0.0.1"]

    assert client_ip(_request("10.0.0.1", "garbage, 203.0.113.5")) == "203.0.113.5"


def test_garbage_between_trusted_hops_stops_the_walk_at_the_last_trusted_hop(settings):
    """An unparseable hop behind trusted proxies ends the walk: the last address a trusted proxy reported is used."""
    settings.AUDIT_TRUSTED_PROXIES = ["10.0.0.0/8"]

    assert client_ip(_request("10.0.0.1", "203.0.113.5, bogus, 10.0.0.2")) == "10.0.0.2"


def test_malformed_trusted_proxy_setting_is_skipped(settings):
    """A malformed entry in AUDIT_TRUSTED_PROXIES is ignored; the valid entries still apply."""
    settings.AUDIT_TRUSTED_PROXIES = ["not-a-network", "10.0.0.0/33", "10.0.0.1"]

    assert client_ip(_request("10.0.0.1", "203.0.113.5")) == "203.0.113.5"
    assert client_ip(_request("10.0.0.2", "203.0.113.5")) == "10.0.0.2"


@pytest.mark.parametrize("remote_addr", ["", "garbage", "300.1.1.1"])
def test_unparseable_peer_address_gives_no_address(settings, remote_addr):
    """Without a valid peer address there is no client address (None), not an exception."""
    settings.AUDIT_TRUSTED_PROXIES = ["10.0.0.0/8"]

    assert client_ip(_request(remote_addr, "203.0.113.5")) is None


def test_ipv6_peer_without_proxies(settings):
    """An IPv6 peer is recorded in its compressed form."""
    settings.AUDIT_TRUSTED_PROXIES = []

    assert client_ip(_request("2001:0db8:0000:0000:0000:0000:0000:0001")) == "2001:db8::1"


def test_ipv6_trusted_proxy_by_address_and_network(settings):
    """IPv6 proxies are trusted by address and by network, and IPv6 clients are read from X-Forwarded-For."""
    settings.AUDIT_TRUSTED_PROXIES = ["::1", "fd00::/8"]

    assert client_ip(_request("::1", "2001:db8::42")) == "2001:db8::42"
    assert client_ip(_request("fd00::1", "2001:db8:0:0:0:0:0:7, fd12::3")) == "2001:db8::7"
    assert client_ip(_request("fd00::1", "203.0.113.5")) == "203.0.113.5"


def test_ipv6_peer_not_trusted_ignores_forwarded_for(settings):
    """An IPv6 peer outside the trusted networks cannot choose its recorded address."""
    settings.AUDIT_TRUSTED_PROXIES = ["fd00::/8"]

    assert client_ip(_request("2001:db8::99", "2001:db8::42")) == "2001:db8::99"


@pytest.mark.django_db
def test_client_address_behind_a_trusted_proxy_is_recorded(client, settings, user):
    """Through the middleware, an entry recorded during a proxied request carries the forwarded client address."""
    settings.AUDIT_TRUSTED_PROXIES = ["10.0.0.0/8"]
    client.force_login(user)

    response = client.get(
        "/api/audit/events", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.5, 10.0.0.2"
    )

    assert response.status_code == 200
    assert read_back(action=AuditAction.AUDIT_VIEW).ip_address == "203.0.113.5"


# --- the request log line ------------------------------------------------------------------------------------------


@pytest.fixture
def request_log(caplog):
    """The records of the "audit.request" logger.

    That logger does not propagate to the root logger; pytest 9 attaches caplog to non-propagating loggers itself,
    older versions do not, hence the handler is attached here unless it already is.
    """
    logger = logging.getLogger(REQUEST_LOGGER)
    attached = caplog.handler not in logger.handlers
    if attached:
        logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger=REQUEST_LOGGER)
    try:
        yield lambda: [record for record in caplog.records if record.name == REQUEST_LOGGER]
    finally:
        if attached:
            logger.removeHandler(caplog.handler)


@pytest.mark.django_db
def test_one_info_log_line_per_request_with_route_not_path(client, user, request_log):
    """Each request writes exactly one INFO line on "audit.request" with request id, user id, method, the URL
    pattern (not the path, which holds caller-controlled text), status and latency."""
    entry = record(AuditAction.AUDIT_VIEW, entity="AuditLog", actor=user)
    client.force_login(user)

    response = client.get(f"/api/audit/events/{entry.pk}", HTTP_X_REQUEST_ID="log-line-test-1")

    assert response.status_code == 200
    (line,) = request_log()
    assert line.levelno == logging.INFO
    assert line.request_id == "log-line-test-1" == response["X-Request-ID"]
    assert line.user_id == user.pk
    assert line.method == "GET"
    assert line.route == "api/audit/events/<int:pk>"
    assert line.status == 200
    assert isinstance(line.latency_ms, float) and line.latency_ms >= 0
    message = line.getMessage()
    assert "route=api/audit/events/<int:pk>" in message
    assert f"/{entry.pk}" not in message
    assert f"user_id={user.pk}" in message
    assert "request_id=log-line-test-1" in message
    assert "status=200" in message


@pytest.mark.django_db
def test_log_line_for_anonymous_refused_request(client, request_log):
    """An unauthenticated API call still gets its line: no user id, its route and the 401 status."""
    response = client.get("/api/audit/events?action=%0Aforged")

    assert response.status_code == 401
    (line,) = request_log()
    assert line.user_id is None
    assert "user_id=-" in line.getMessage()
    assert line.route == "api/audit/events"
    assert line.status == 401
    assert "forged" not in line.getMessage()


@pytest.mark.django_db
def test_log_line_for_an_unknown_path_names_no_route(client, request_log):
    """A path that matches no URL pattern is logged with route "-", never with the requested path."""
    response = client.get("/no/such/page/secret-looking-path")

    assert response.status_code == 404
    (line,) = request_log()
    assert line.route == "-"
    assert line.status == 404
    assert "secret-looking-path" not in line.getMessage()


@pytest.mark.django_db
def test_each_request_writes_its_own_line(client, user, request_log):
    """Two requests give two lines, each with its own request id."""
    client.force_login(user)

    first = client.get("/api/audit/events")
    second = client.get("/api/audit/events")

    lines = request_log()
    assert len(lines) == 2
    assert [line.request_id for line in lines] == [first["X-Request-ID"], second["X-Request-ID"]]
    assert lines[0].request_id != lines[1].request_id
