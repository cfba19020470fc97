"""The client's address behind trusted proxies (gateway/client_ip.py): X-Forwarded-For and
X-Real-IP are believed only from gateway.trusted_proxies, the right-most untrusted hop is the
client, and a click (GET /r/{code}) records that address."""
from __future__ import annotations

import ipaddress

import pytest
from fastapi.testclient import TestClient

from engine.config import ConfigError, parse_config
from gateway.app import create_app
from gateway.client_ip import TrustedProxies, parse_ip
from gateway.handoff import EmbeddedHandoff
from gateway.links import Link, make_code
from gateway.settings import gateway_settings
from sinks import open_ledger
from topologies.embedded import EmbeddedPipeline

TRUSTED = TrustedProxies([ipaddress.ip_network(n) for n in ("10.0.0.0/8", "127.0.0.1/32", "2001:db8:f::/48")])


def test_an_untrusted_peers_headers_are_ignored():
    # a client connecting directly claims to be someone else: its own address is kept
    assert TRUSTED.client("203.0.113.9", ["1.2.3.4"], "5.6.7.8") == "203.0.113.9"
    assert TRUSTED.client("2001:db8:1::9", ["1.2.3.4"], None) == "2001:db8:1::9"


def test_a_chain_through_two_trusted_proxies_gives_the_right_most_untrusted_hop():
    # client 198.51.100.7 spoofs "6.6.6.6"; the edge proxy 10.1.0.1 appended the client, the inner
    # proxy 10.2.0.1 appended the edge proxy; the inner one connected to us
    header = ["6.6.6.6, 198.51.100.7, 10.1.0.1"]
    assert TRUSTED.client("10.2.0.1", header, None) == "198.51.100.7"
    # the same chain in two header lines (RFC 9110: one list) and with ports some proxies add
    assert TRUSTED.client("10.2.0.1", ["6.6.6.6", "198.51.100.7:51234 , 10.1.0.1"], None) == "198.51.100.7"
    # every hop trusted: the left-most is as far as anyone vouches
    assert TRUSTED.client("127.0.0.1", ["10.9.9.9, 10.1.0.1"], None) == "10.9.9.9"


def test_ipv6_clients_and_proxies():
    assert TRUSTED.client("2001:db8:f::1", ["2001:DB8:1:0::42"], None) == "2001:db8:1::42"  # normalised
    assert TRUSTED.client("2001:db8:f::1", ["[2001:db8:2::7]:443, 2001:db8:f::2"], None) == "2001:db8:2::7"
    # a dual-stack socket reports an IPv4 proxy as ::ffff:10.0.0.3: still the trusted 10.0.0.0/8
    assert TRUSTED.client("::ffff:10.0.0.3", ["192.0.2.1"], None) == "192.0.2.1"


def test_x_real_ip_only_without_x_forwarded_for_and_malformed_hops_stop_the_walk():
    assert TRUSTED.client("10.0.0.2", [], "192.0.2.55") == "192.0.2.55"
    assert TRUSTED.client("10.0.0.2", ["192.0.2.1"], "192.0.2.55") == "192.0.2.1"
    assert TRUSTED.client("10.0.0.2", ["192.0.2.1, unknown"], None) == "10.0.0.2"  # no address: the proxy
    assert TRUSTED.client("10.0.0.2", [" , "], None) == "10.0.0.2"
    assert TRUSTED.client("testclient", ["192.0.2.1"], None) == "testclient"  # a peer that is not an IP
    assert parse_ip("[::1") is None and str(parse_ip("192.0.2.1:80")) == "192.0.2.1"
    assert TrustedProxies([]).client("10.0.0.2", ["192.0.2.1"], None) == "10.0.0.2"  # nothing trusted


def test_trusted_proxies_are_validated():
    assert gateway_settings({"gateway": {"trusted_proxies": ["10.0.0.0/8", "::1"]}}).trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
    with pytest.raises(ConfigError) as bad:
        gateway_settings({"gateway": {"trusted_proxies": ["10.0.0.1/8", "lb.internal"]}})
    assert [(p.path, p.message) for p in bad.value.problems] == [
        ("gateway.trusted_proxies[0]", "expected an IP address or network: 10.0.0.1/8 has host bits set"),
        ("gateway.trusted_proxies[1]", "expected an IP address or network: 'lb.internal' does not appear to be an "
                                       "IPv4 or IPv6 network")]
    with pytest.raises(ConfigError):
        gateway_settings({"gateway": {"trusted_proxies": "10.0.0.0/8"}})


RAW = {"currency": "USD", "links": {"secret": "shh-links", "landing_url": "https://shop.example/"},
       "gateway": {"trusted_proxies": ["10.0.0.0/8", "2001:db8:f::/48"]}}


@pytest.mark.parametrize("peer, headers, recorded", [
    ("10.0.0.9", {"X-Forwarded-For": "6.6.6.6, 198.51.100.7"}, "198.51.100.7"),
    ("203.0.113.9", {"X-Forwarded-For": "198.51.100.7", "X-Real-IP": "198.51.100.8"}, "203.0.113.9"),
    ("2001:db8:f::1", {"X-Real-IP": "2001:db8:5::5"}, "2001:db8:5::5"),
])
def test_a_click_records_the_client_behind_the_proxies(tmp_path, peer, headers, recorded):
    ledger = open_ledger(None, tmp_path)
    handoff = EmbeddedHandoff(EmbeddedPipeline(parse_config(RAW), tmp_path, ledger))
    code = make_code(Link("P1"), "shh-links")
    with TestClient(create_app(gateway_settings(RAW), handoff), client=(peer, 40000)) as client:
        assert client.get(f"/r/{code}", headers=headers, follow_redirects=False).status_code == 302
    assert ledger.query("SELECT ip, promoter_id FROM clicks").rows == [(recorded, "P1")]
    ledger.close()
