"""Every forbidden kind of callback address and URL, through the submit-time check (``check_callback_url``, no
lookup) and the delivery-time check (``public_addresses`` with a fake resolver); public addresses pass both.

The cases live in ``FORBIDDEN_ADDRESSES``, ``FORBIDDEN_URLS`` and ``PUBLIC_*``, written by hand (not derived from
``FORBIDDEN_NETWORKS``, so that dropping a network from the table fails a case). Run this file as a script to
print the forbidden-address table (kind, example inputs, tests)::

    PYTHONPATH=layers/jobs .venv/bin/python tests/unit/test_webhook_addresses.py
"""

from __future__ import annotations

import ipaddress

import pytest

from jobs.models import MAX_CALLBACK_URL_LENGTH
from jobs.webhooks import (
    FORBIDDEN_NETWORKS,
    CallbackRefused,
    address_refusal,
    check_callback_url,
    public_addresses,
)

#: Forbidden addresses by kind: several per network, both edges of each range, and the forms an IPv6 address
#: carries an IPv4 one in (IPv4-mapped ``::ffff:0:0/96``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``,
#: IPv4-compatible ``::/96``).
FORBIDDEN_ADDRESSES: dict[str, tuple[str, ...]] = {
    "instance metadata": ("169.254.169.254", "fd00:ec2::254"),
    "this network 0.0.0.0/8": ("0.0.0.0", "0.1.2.3", "0.255.255.255"),  # noqa: S104 - an address refused, not bound
    "private 10.0.0.0/8": ("10.0.0.0", "10.1.2.3", "10.255.255.255"),
    "carrier-grade NAT 100.64.0.0/10": ("100.64.0.0", "100.100.100.200", "100.127.255.255"),
    "loopback 127.0.0.0/8": ("127.0.0.0", "127.0.0.1", "127.1.2.3", "127.255.255.255"),
    "link-local 169.254.0.0/16": ("169.254.0.0", "169.254.1.1", "169.254.255.255"),
    "private 172.16.0.0/12": ("172.16.0.0", "172.20.10.1", "172.31.255.255"),
    "IETF protocol assignments 192.0.0.0/24": ("192.0.0.0", "192.0.0.8", "192.0.0.255"),
    "documentation 192.0.2.0/24": ("192.0.2.0", "192.0.2.1", "192.0.2.255"),
    "6to4 relay anycast 192.88.99.0/24": ("192.88.99.0", "192.88.99.1", "192.88.99.255"),
    "private 192.168.0.0/16": ("192.168.0.0", "192.168.1.1", "192.168.255.255"),
    "benchmarking 198.18.0.0/15": ("198.18.0.0", "198.18.5.5", "198.19.255.255"),
    "documentation 198.51.100.0/24": ("198.51.100.0", "198.51.100.7", "198.51.100.255"),
    "documentation 203.0.113.0/24": ("203.0.113.0", "203.0.113.9", "203.0.113.255"),
    "multicast 224.0.0.0/4": ("224.0.0.0", "224.0.0.251", "239.255.255.255"),
    "reserved 240.0.0.0/4 (and broadcast)": ("240.0.0.0", "250.1.2.3", "255.255.255.254", "255.255.255.255"),
    "unspecified ::": ("::",),
    "loopback ::1": ("::1",),
    "IPv4-compatible ::/96": ("::7f00:1", "::a00:1", "::808:808", "::ffff:ffff"),
    "local-use NAT64 64:ff9b:1::/48": ("64:ff9b:1::", "64:ff9b:1::808:808", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff"),
    "discard-only 100::/64": ("100::", "100::1", "100::ffff:ffff:ffff:ffff"),
    "documentation 2001:db8::/32": ("2001:db8::", "2001:db8::1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
    "unique local fc00::/7": ("fc00::", "fd12:3456::1", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    "link-local fe80::/10": ("fe80::", "fe80::1", "fe80::1%eth0", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    "site-local fec0::/10": ("fec0::", "fec0::1", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    "multicast ff00::/8": ("ff00::", "ff02::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    "documentation 3fff::/20 (RFC 9637)": ("3fff::", "3fff::1", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff"),
    "outside IPv6 global unicast 2000::/3 (IANA IPv6 Address Space: reserved by the IETF)": (
        "::ffff:0:7f00:1",  # IPv4-translated (SIIT, RFC 2765): 127.0.0.1 where a translator runs
        "::ffff:0:a9fe:a9fe",
        "::1:0:0:1",
        "1::1",
        "400::1",
        "4000::1",
        "5f00::1",  # SRv6 segment identifiers (RFC 9602)
        "e000::1",
        "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "4000::",
    ),
    "not globally reachable (IANA registry: Teredo, benchmarking, ORCHID)": ("2001::1", "2001:2::1", "2001:10::1"),
    "IPv4-mapped forms": (
        "::ffff:127.0.0.1",
        "::ffff:7f00:1",
        "::ffff:10.0.0.1",
        "::ffff:100.64.0.1",
        "::ffff:169.254.169.254",
        "::ffff:192.168.1.1",
        "::ffff:0.0.0.0",
    ),
    "NAT64 64:ff9b::/96 forms": (
        "64:ff9b::127.0.0.1",
        "64:ff9b::a00:1",
        "64:ff9b::100.64.0.1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::192.168.1.1",
    ),
    "6to4 2002::/16 forms": (
        "2002:7f00:1::",
        "2002:7f00:1::1",
        "2002:a00:1::1",
        "2002:6440:1::1",
        "2002:a9fe:a9fe::1",
        "2002:c0a8:101::1",
    ),
}

#: Forbidden URLs by kind (refused by ``check_callback_url`` before any lookup).
FORBIDDEN_URLS: dict[str, tuple[str, ...]] = {
    "shorthand IPv4": (
        "https://2130706433/",
        "https://0x7f000001/",
        "https://017700000001/",
        "https://0x7f.1/",
        "https://0177.0.0.1/",
        "https://127.1/",
        "https://10.1/",
        "https://3232235777/",
        "https://0x7f.0x0.0x0.0x1/",
    ),
    "localhost names": (
        "https://localhost/",
        "https://LOCALHOST/",
        "https://localhost./",
        "https://api.localhost/",
        "https://a.b.localhost:8443/x",
    ),
    "user info": (
        "https://user:pass@hooks.example.com/",
        "https://user@hooks.example.com/",
        "https://hooks.example.com@127.0.0.1/",
        "https://:@hooks.example.com/",
    ),
    "not https": (
        "http://hooks.example.com/",
        "ftp://hooks.example.com/",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "//hooks.example.com/",
        "hooks.example.com/x",
        "javascript:alert(1)",
    ),
    "fragments": ("https://hooks.example.com/#", "https://hooks.example.com/x#frag", "https://hooks.example.com#a"),
    "long URLs": (
        "https://hooks.example.com/" + "a" * (MAX_CALLBACK_URL_LENGTH - len("https://hooks.example.com/") + 1),
        "https://hooks.example.com/?q=" + "x" * 5000,
        "https://" + "a." * 1100 + "com/",
    ),
    "bad ports": (
        "https://hooks.example.com:0/",
        "https://hooks.example.com:65536/",
        "https://hooks.example.com:99999/",
        "https://hooks.example.com:-1/",
        "https://hooks.example.com:abc/",
        "https://hooks.example.com:443443/",
    ),
    "not a plain ASCII URL": (
        "https://hooks.example.com/a b",
        "https://hööks.example.com/",
        "https://hooks.example.com/\n",
        "https://hooks.example.com/\x00",
        "https://hooks.example.com/<script>",
    ),
    "no host or not a name": ("https:///path", "https://:443/", "https://hooks_example.com/", "https://-a.com/"),
    "not a URL urlsplit reads (bracket errors)": (
        "https://[127.0.0.1]/",
        "https://[10.0.0.1]:8443/hook",
        "https://[::1/",
        "https://]x[/",
        "https://[zz]/",
    ),
    "not an IPv6 address in brackets, or one with a zone id": (
        "https://[v1.x]/",
        "https://[v7.hooks.example.com]/",
        "https://[2606:4700:4700::1111%25eth0]/",
        "https://[2606:4700:4700::1111%251]/",
    ),
    "an IPv4 address with a final dot (WHATWG URL reads it as the address)": (
        "https://127.0.0.1./",
        "https://10.0.0.1.:8443/",
        "https://93.184.216.34./",
        "https://127.1./",
        "https://0x7f.0.0.1./",
    ),
    "forbidden literal addresses in URL form": (
        "https://127.0.0.1/",
        "https://127.0.0.1:8443/hook",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:7f00:1]/",
        "https://[64:ff9b::7f00:1]/",
        "https://[2002:7f00:1::1]/",
        "https://[fe80::1%25eth0]/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
    ),
}

#: Public addresses, including the nearest neighbours of the forbidden ranges, and the public IPv4 addresses in
#: IPv4-mapped, NAT64 and 6to4 form: every one passes.
PUBLIC_ADDRESSES: tuple[str, ...] = (
    "1.1.1.1",
    "8.8.8.8",
    "93.184.216.34",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "169.255.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.88.98.255",
    "192.88.100.0",
    "192.167.255.255",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "2000::1",
    "3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "3fff:1000::",
    "::ffff:93.184.216.34",
    "64:ff9b::5db8:d822",
    "2002:5db8:d822::1",
)

PUBLIC_URLS: tuple[str, ...] = (
    "https://hooks.example.com/cb?token=abc",
    "HTTPS://Hooks.Example.COM:8443/x",
    "https://hooks.example.com:443/",
    "https://hooks.example.com./",
    "https://xn--hks-qqa.example.com/",
    "https://93.184.216.34/",
    "https://[2606:4700:4700::1111]/x",
    "https://hooks.example.com/" + "a" * (MAX_CALLBACK_URL_LENGTH - len("https://hooks.example.com/")),
)

#: Which tests each table runs through (for the printed table).
TESTS = {
    "address": (
        "test_a_forbidden_address_is_refused_by_address_refusal",
        "test_a_forbidden_literal_address_in_a_url_is_refused_at_submit",
        "test_a_name_resolving_to_a_forbidden_address_is_refused_at_delivery",
        "test_one_forbidden_answer_among_public_ones_refuses_the_name",
        "test_a_forbidden_literal_host_is_refused_at_delivery_without_a_lookup",
    ),
    "url": ("test_a_forbidden_url_is_refused_at_submit",),
}


def _cases(table: dict[str, tuple[str, ...]]) -> list[pytest.ParameterSet]:
    return [
        pytest.param(kind, value, id=f"{kind}:{value[:60]!r}") for kind, values in table.items() for value in values
    ]


def _url_of(address: str) -> str:
    literal = address.replace("%", "%25")
    return f"https://[{literal}]/hook" if ":" in address else f"https://{address}/hook"


class FakeResolver:
    """Answers every name with the given addresses and counts its lookups."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        return self.answers


@pytest.mark.parametrize(("kind", "address"), _cases(FORBIDDEN_ADDRESSES))
def test_a_forbidden_address_is_refused_by_address_refusal(kind: str, address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(("kind", "address"), _cases(FORBIDDEN_ADDRESSES))
def test_a_forbidden_literal_address_in_a_url_is_refused_at_submit(kind: str, address: str) -> None:
    with pytest.raises(CallbackRefused, match="not a public address"):
        check_callback_url(_url_of(address))


@pytest.mark.parametrize(("kind", "address"), _cases(FORBIDDEN_ADDRESSES))
def test_a_name_resolving_to_a_forbidden_address_is_refused_at_delivery(kind: str, address: str) -> None:
    resolver = FakeResolver(address)

    with pytest.raises(CallbackRefused, match="forbidden address") as refused:
        public_addresses("hooks.example.com", 443, resolver=resolver)

    assert refused.value.kind == "address"
    assert resolver.lookups == [("hooks.example.com", 443)]


@pytest.mark.parametrize(("kind", "address"), _cases(FORBIDDEN_ADDRESSES))
def test_one_forbidden_answer_among_public_ones_refuses_the_name(kind: str, address: str) -> None:
    with pytest.raises(CallbackRefused, match="forbidden address"):
        public_addresses("hooks.example.com", 443, resolver=FakeResolver("93.184.216.34", address, "1.1.1.1"))


@pytest.mark.parametrize(("kind", "address"), _cases(FORBIDDEN_ADDRESSES))
def test_a_forbidden_literal_host_is_refused_at_delivery_without_a_lookup(kind: str, address: str) -> None:
    resolver = FakeResolver("93.184.216.34")

    with pytest.raises(CallbackRefused):
        public_addresses(address, 443, resolver=resolver)

    assert resolver.lookups == []


@pytest.mark.parametrize(("kind", "url"), _cases(FORBIDDEN_URLS))
def test_a_forbidden_url_is_refused_at_submit(kind: str, url: str) -> None:
    with pytest.raises(CallbackRefused):
        check_callback_url(url)


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001", "10.1", "3232235777", "017700000001"]
)
def test_a_shorthand_ipv4_host_is_refused_at_delivery_without_a_lookup(host: str) -> None:
    resolver = FakeResolver("93.184.216.34")

    with pytest.raises(CallbackRefused, match="shorthand"):
        public_addresses(host, 443, resolver=resolver)

    assert resolver.lookups == []


@pytest.mark.parametrize("host", ["localhost", "api.localhost", "hooks.example.com"])
def test_a_name_resolving_to_loopback_is_refused_at_delivery(host: str) -> None:
    for answer in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        with pytest.raises(CallbackRefused, match="loopback"):
            public_addresses(host, 443, resolver=FakeResolver(answer))


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_a_public_address_passes_both_checks(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None
    assert check_callback_url(_url_of(address)).scheme == "https"
    assert public_addresses("hooks.example.com", 8443, resolver=FakeResolver(address)) == [
        ipaddress.ip_address(address)
    ]


def test_every_public_answer_is_returned_in_the_resolvers_order() -> None:
    answers = ("93.184.216.34", "2606:4700:4700::1111", "1.1.1.1")

    assert public_addresses("hooks.example.com", 443, resolver=FakeResolver(*answers)) == [
        ipaddress.ip_address(answer) for answer in answers
    ]


@pytest.mark.parametrize("url", PUBLIC_URLS)
def test_a_public_url_passes_the_submit_check(url: str) -> None:
    assert check_callback_url(url).scheme.lower() == "https"


def test_a_name_that_does_not_resolve_is_refused_as_dns() -> None:
    def failing(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    for resolver in (failing, FakeResolver()):
        with pytest.raises(CallbackRefused) as refused:
            public_addresses("hooks.example.com", 443, resolver=resolver)
        assert refused.value.kind == "dns"


def test_the_loopback_flag_lets_loopback_through_and_nothing_else() -> None:
    for address in ("127.0.0.1", "127.9.9.9", "::1"):
        assert public_addresses("receiver.test", 443, resolver=FakeResolver(address), allow_loopback=True)
    assert check_callback_url("https://localhost:8443/", allow_loopback=True)
    others = ("10.0.0.1", "169.254.169.254", "192.168.1.1", "100.64.0.1", "fe80::1", "0.0.0.0", "::")  # noqa: S104
    for address in others:
        with pytest.raises(CallbackRefused):
            public_addresses("receiver.test", 443, resolver=FakeResolver(address), allow_loopback=True)


def test_every_network_of_the_table_has_cases_at_both_of_its_edges() -> None:
    """The hand-written cases cover each FORBIDDEN_NETWORKS entry at its first and last address (a network added
    to the table without cases fails here)."""
    addresses = [ipaddress.ip_address(text.split("%")[0]) for values in FORBIDDEN_ADDRESSES.values() for text in values]
    for network, reason in FORBIDDEN_NETWORKS:
        inside = [address for address in addresses if address.version == network.version and address in network]
        assert inside, f"no case for {network} ({reason})"
        if network.num_addresses > 1:
            assert network[0] in inside, f"{network}: no case at its first address"
            assert network[-1] in inside, f"{network}: no case at its last address"


def table() -> str:
    """The forbidden-address table, as Markdown: kind, example inputs, the tests each goes through."""
    lines = ["| kind | example inputs | tests |", "| --- | --- | --- |"]
    for tests, source in (("address", FORBIDDEN_ADDRESSES), ("url", FORBIDDEN_URLS)):
        names = ", ".join(f"`{name}`" for name in TESTS[tests])
        for kind, values in source.items():
            printable = [
                value.encode("unicode_escape").decode() if not value.isprintable() else value for value in values
            ]
            shown = ", ".join(f"`{value if len(value) <= 60 else value[:40] + '…'}`" for value in printable)
            lines.append(f"| {kind} | {shown} | {names} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
