"""Report that the agent's own main process ended: one status event and one alert.

The container supervisor (hatchery's agent-entrypoint.sh) runs this once when
the main process exits on its own, before it stops the handler::

    python3 -m agent_kit.mainexit --config /etc/hatchery/agent.json --exit-code 137

It publishes, with the agent's own credentials and at QoS 1, the
``contract.make_main_exited`` pair: ``event=main-exited exit=N`` on
``fleet/{name}/status`` and ``code=main-exited reason=signal-9|exit-N`` on
``fleet/{name}/alert``. The handler's Will only covers the handler's own
death; this covers the program the agent exists for. Bounded in time: the
container's restart must not wait on a broker that is away.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import bus, contract
from .config import load_config

EXIT_FAILURE = 1
EXIT_USAGE = 2


def parse_args(argv: list | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="agent_kit.mainexit",
        description="Publish the main-exited status event and alert for this agent.")
    parser.add_argument("--config", help="agent config JSON (default: $HATCHERY_AGENT_CONFIG)")
    parser.add_argument("--exit-code", type=int, required=True,
                        help="the main process's exit status as the shell saw it (0-255)")
    parser.add_argument("--timeout", type=float, default=3.0,
                        help="seconds for the connect and for each acknowledgement (default 3)")
    return parser.parse_args(argv)


def report(config, exit_status: int, timeout: float) -> None:
    """Publish the event, then the alert; BusError when the broker is away or slow."""
    event, alert = contract.make_main_exited(config.name, exit_status)
    with bus.session(config.broker_host, config.broker_port, timeout, username=config.username,
                     password=config.password(), ca_file=config.ca_file) as client:
        for kind, payload in (("status", event), ("alert", alert)):
            bus.publish_and_wait(client, contract.topic(config.name, kind),
                                 contract.encode(payload), timeout=timeout)


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config, os.environ)
        report(config, args.exit_code, args.timeout)
    except (ValueError, contract.ContractError) as exc:
        print(f"agent_kit.mainexit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except bus.BusError as exc:
        print(f"agent_kit.mainexit: not reported: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
