"""Per-address connection limits in front of the broker's MQTT ports, as an nftables file.

Mosquitto 2.0.x closes a connection that never sends CONNECT only after about
90 s (2.1: 30 s); a neighbour that opens them again holds every slot of a
listener's ``max_connections`` for as long as it likes (bench/idle_flood_bench.py).
In front of the listener, nftables limits what one source address (an IPv6
/64) may hold and how fast it may open connections, before Mosquitto sees them.

Pure: inventory or numbers in, text out (templates/broker.nft.j2). Every value
that reaches the file is an integer checked against its bounds here.
"""

from __future__ import annotations

from hatchery.configs.broker import LOOPBACK, plain_bind
from hatchery.core.hosts import LOCAL_HOST
from hatchery.core.render import render
from hatchery.errors import UsageError
from hatchery.inventory.model import Inventory
from hatchery.inventory.placement import broker_engine, host_of

PER_SOURCE_MIN = 16       # connections one address may hold, at least
PER_AGENT = 2             # a reconnect overlaps the old connection
PER_SOURCE_MARGIN = 8     # the agents' bus-* tools beside their handlers
RATE_PER_SECOND = 10      # new connections per second from one address, sustained
BURST_MIN = 40            # ... and at once (a host's agents reconnecting after a restart)


def _bounded(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"firewall: {name} must be an integer from {low} to {high}, not {value!r}")
    return value


def render_rules(*, ports, per_source: int = PER_SOURCE_MIN, rate: int = RATE_PER_SECOND,
                 burst: int = BURST_MIN) -> str:
    """The nftables file: one table ``hatchery_mqtt_<first port>``, replaced on every load."""
    checked = sorted({_bounded("port", p, 1, 65535) for p in ports})
    if not checked:
        raise UsageError("firewall: no port to guard")
    context = {"ports": checked, "table": f"hatchery_mqtt_{checked[0]}",
               "per_source": _bounded("per_source", per_source, 1, 65535),
               "rate": _bounded("rate", rate, 1, 100000),
               "burst": _bounded("burst", burst, 1, 100000)}
    return render("broker.nft.j2", context)


def exposed_ports(inv: Inventory) -> list:
    """The broker's host ports that listen beyond loopback (what a neighbour can reach)."""
    b = inv.broker
    ports = [] if plain_bind(inv) in LOOPBACK else [b.port]
    if b.tls and b.bind not in LOOPBACK:
        ports.append(b.tls_port)
    return ports


def broker_host(inv: Inventory) -> str:
    """The name of the broker's host, as ``core.hosts.host_of`` names an agent's."""
    if inv.broker.on_host:
        return inv.broker.on_host
    engine = broker_engine(inv.broker)
    if not engine:
        return LOCAL_HOST
    declared = inv.host_by_engine(engine)
    return declared.name if declared else engine


def per_source_limit(inv: Inventory) -> int:
    """Room for the busiest other host: its agents share its one address (their engine's NAT).
    Agents on the broker's own host come over loopback or the fleet's network, each its own."""
    counts: dict = {}
    home = broker_host(inv)
    for agent in inv.agents.values():
        host = host_of(inv, agent)
        if host != home:
            counts[host] = counts.get(host, 0) + 1
    busiest = max(counts.values(), default=0)
    return max(PER_SOURCE_MIN, PER_AGENT * busiest + PER_SOURCE_MARGIN)


def render_for(inv: Inventory) -> str:
    """The rules for this fleet's broker ('' when nothing listens beyond loopback)."""
    ports = exposed_ports(inv)
    if not ports:
        return ""
    per_source = per_source_limit(inv)
    return render_rules(ports=ports, per_source=per_source, burst=max(BURST_MIN, per_source))
