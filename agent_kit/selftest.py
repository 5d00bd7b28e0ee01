"""bus-selftest: the agent's own credentials against the broker's ACL, from inside the agent.

Run inside an agent (``invoke verify`` does, in every docker agent): it logs
in with the agent's own credentials and publishes at QoS 1 on
``hatchery/verify/{name}/selftest``, the one verify topic the ACL lets it
write, which the broker must acknowledge; and, with credentials, on
``hatchery/verify/{name}/denied``, which the broker must refuse as not
authorised (MQTT 5 PUBACK reason codes). Nothing is retained. Prints ``ping``
on success; exit 1 on any failure, 2 on a bad config.

The agent may write its selftest topic but not read it: an agent reads no
topic it can write, so it cannot park its own messages in offline sessions
(hatchery.security.acl).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from . import bus
from .config import AgentConfig, load_config

VERIFY_PREFIX = "hatchery/verify"
SELFTEST_LEAF = "selftest"      # hatchery.security.acl grants exactly this topic
DENIED_LEAF = "denied"          # ... and not this one
NOT_AUTHORISED = 0x87


class Acks:
    """The PUBACK reason code of each message id (MQTT 5)."""

    def __init__(self):
        self.codes: dict = {}
        self.arrived = threading.Condition()

    def on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self.arrived:
            self.codes[mid] = reason_code
            self.arrived.notify_all()

    def wait(self, mid: int, timeout: float):
        with self.arrived:
            if not self.arrived.wait_for(lambda: mid in self.codes, timeout):
                raise bus.BusError(f"no PUBACK within {timeout:g}s")
            return self.codes[mid]


def round_trip(config: AgentConfig, timeout: float) -> bytes:
    """b"ping" when the broker takes the agent's own topic and refuses the other; else BusError."""
    topic = f"{VERIFY_PREFIX}/{config.name}/{SELFTEST_LEAF}"
    acks = Acks()
    with bus.session(config.broker_host, config.broker_port, timeout,
                     username=config.username, password=config.password(),
                     ca_file=config.ca_file) as client:
        client.on_publish = acks.on_publish
        taken = acks.wait(client.publish(topic, b"ping", qos=1).mid, timeout)
        if taken.is_failure:
            raise bus.BusError(f"the broker refused {topic}: {taken}")
        if config.username:
            denied = f"{VERIFY_PREFIX}/{config.name}/{DENIED_LEAF}"
            refused = acks.wait(client.publish(denied, b"ping", qos=1).mid, timeout)
            if refused.value != NOT_AUTHORISED:
                raise bus.BusError(f"the broker took {denied}, which this agent may not "
                                   f"write: its ACL is not enforced ({refused})")
    return b"ping"


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bus-selftest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="agent config JSON (default: $HATCHERY_AGENT_CONFIG)")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, os.environ)
        got = round_trip(config, args.timeout)
    except ValueError as exc:
        print(f"bus-selftest: {exc}", file=sys.stderr)
        return 2
    except bus.BusError as exc:
        print(f"bus-selftest: {exc}", file=sys.stderr)
        return 1
    print(got.decode(errors="replace"))
    return 0 if got == b"ping" else 1


if __name__ == "__main__":
    sys.exit(main())
