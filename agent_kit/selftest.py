"""bus-selftest: a retained round trip on the agent's private verify topic.

Run inside an agent (``invoke verify`` does, in every docker agent): it logs
in with the agent's own credentials, publishes a retained message on
``hatchery/verify/{name}/selftest`` (the only verify topic the ACL grants it:
a wildcard would let a compromised agent store unbounded retained data),
reads it back, and clears it. Prints ``ping`` on success; exit 1 on any
failure, 2 on a bad config.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys

from . import bus
from .config import AgentConfig, load_config

VERIFY_PREFIX = "hatchery/verify"
SELFTEST_LEAF = "selftest"      # hatchery.security.acl grants exactly this topic


def round_trip(config: AgentConfig, timeout: float) -> bytes:
    """Publish retained, read back, clear; the payload read back."""
    topic = f"{VERIFY_PREFIX}/{config.name}/{SELFTEST_LEAF}"
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    with bus.session(config.broker_host, config.broker_port, timeout,
                     username=config.username, password=config.password(),
                     ca_file=config.ca_file) as client:
        bus.publish_and_wait(client, topic, b"ping", retain=True, timeout=timeout)
        client.on_message = lambda c, u, message: inbox.put(message.payload)
        client.subscribe(topic, qos=1)
        try:
            got = inbox.get(timeout=timeout)
        except queue.Empty:
            got = b""
        bus.publish_and_wait(client, topic, b"", retain=True, timeout=timeout)  # clear it
    return got


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
