"""LoadSampler against a fake psutil module: priming, loads, and which addresses count as the node's."""

from __future__ import annotations

import ipaddress
import socket

from agent_doubles import AF_LINK, fake_psutil, inet, nic
from hypothesis import given, settings
from hypothesis import strategies as st

from servertrack.agent.sampler import LoadSampler

# The reference model for ips(): explicit networks, not the ipaddress predicates the code uses.
_EXCLUDED = [ipaddress.ip_network(net) for net in ("127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10")]


def _model_ips(interfaces: dict[str, list]) -> set[str]:
    kept = set()
    for addresses in interfaces.values():
        for entry in addresses:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = ipaddress.ip_address(entry.address.partition("%")[0])
            if not any(ip.version == net.version and ip in net for net in _EXCLUDED):
                kept.add(ip.compressed)
    return kept


# --------------------------------------------------------------------------- cpu and ram


def test_cpu_percent_is_primed_once_at_construction() -> None:
    fake = fake_psutil(cpu=(0.0, 37.5))
    LoadSampler(fake)
    assert fake.cpu_calls == [{"interval": None}]


def test_first_load_uses_the_primed_reference_and_never_blocks() -> None:
    fake = fake_psutil(cpu=(0.0, 37.5, 80.0), ram=61.25)
    sampler = LoadSampler(fake)
    assert sampler.load() == (37.5, 61.25)
    assert sampler.load() == (80.0, 61.25)
    # Every call non-blocking (interval=None): a blocking interval would stall the agent's loop.
    assert fake.cpu_calls == [{"interval": None}] * 3


def test_ram_is_virtual_memory_percent() -> None:
    sampler = LoadSampler(fake_psutil(cpu=(0.0, 1.0), ram=99.5))
    cpu, ram = sampler.load()
    assert ram == 99.5
    assert type(cpu) is float and type(ram) is float


def test_loads_are_kept_inside_the_protocol_range() -> None:
    # psutil can report a hair over 100 from rounding; the wire protocol rejects anything outside [0, 100].
    sampler = LoadSampler(fake_psutil(cpu=(0.0, 100.0000001), ram=-0.0001))
    assert sampler.load() == (100.0, 0.0)


# --------------------------------------------------------------------------- ips


def test_ips_without_loopback_link_local_and_non_ip_families() -> None:
    fake = fake_psutil(
        interfaces={
            "lo": [inet("127.0.0.1"), inet("::1"), nic(AF_LINK, "00:00:00:00:00:00")],
            "eth0": [
                inet("10.0.0.5"),
                inet("fe80::1%eth0"),
                inet("169.254.3.4"),
                inet("2001:db8::5"),
                nic(AF_LINK, "52:54:00:12:34:56"),
            ],
            "eth1": [
                inet("10.0.0.5"),
                inet("192.168.1.2"),
                inet("127.1.2.3"),
                inet("fe80::abcd"),
                inet("febf::1"),  # still inside fe80::/10
                inet("fec0::1"),  # outside fe80::/10: kept
            ],
            "weird": [nic(socket.AF_UNIX, "/run/not-an-ip")],
        }
    )
    assert LoadSampler(fake).ips() == sorted(["10.0.0.5", "192.168.1.2", "2001:db8::5", "fec0::1"])


def test_ips_deduplicates_across_interfaces_and_spellings() -> None:
    fake = fake_psutil(
        interfaces={
            "eth0": [inet("10.1.2.3"), inet("2001:db8:0:0::5"), inet("2001:DB8::5")],
            "br0": [inet("10.1.2.3"), inet("2001:db8::5")],
        }
    )
    ips = LoadSampler(fake).ips()
    assert sorted(ips) == ["10.1.2.3", "2001:db8::5"]
    assert len(ips) == len(set(ips))


def test_ips_of_a_node_with_only_loopback_is_empty() -> None:
    fake = fake_psutil(interfaces={"lo": [inet("127.0.0.1"), inet("::1")]})
    assert LoadSampler(fake).ips() == []


_addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).filter(lambda ip: ip.ipv4_mapped is None).map(str),
    # Scoped link-local and well-known excluded ranges, so both sides of the filter are exercised.
    st.integers(0, 2**64 - 1).map(lambda low: f"{ipaddress.IPv6Address((0xFE80 << 112) | low)}%eth0"),
    st.integers(0, 2**24 - 1).map(lambda low: str(ipaddress.IPv4Address((127 << 24) | low))),
    st.integers(0, 2**16 - 1).map(lambda low: str(ipaddress.IPv4Address((169 << 24) | (254 << 16) | low))),
)
_entries = st.one_of(_addresses.map(inet), st.sampled_from([nic(AF_LINK, "aa:bb:cc:dd:ee:ff")]))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["lo", "eth0", "eth1", "wlan0", "docker0"]), st.lists(_entries, max_size=6)))
def test_ips_match_the_reference_model(interfaces: dict[str, list]) -> None:
    ips = LoadSampler(fake_psutil(interfaces=interfaces)).ips()
    assert len(ips) == len(set(ips))
    assert {ipaddress.ip_address(ip).compressed for ip in ips} == _model_ips(interfaces)
