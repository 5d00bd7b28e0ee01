"""The bus toolkit for shells: bus-publish, bus-subscribe, bus-command, bus-heartbeat.

Each reads the same config and environment as the handler, so an agent reports
with one short line (``bus-publish alert code=disk-pressure level=warning``) and
an operator commands from any shell. Output is one JSON object per line on
stdout; problems go to stderr with a non-zero exit (2: usage or contract, 1:
broker or timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from . import bus, contract
from .config import AgentConfig, load_config
from .metrics import host_heartbeat_fields

EXIT_FAILURE = 1
EXIT_USAGE = 2
PUBLISH_KINDS = ("heartbeat", "status", "alert")


class ToolError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.code = code


# --- shared plumbing -------------------------------------------------------------

def _parser(prog: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="agent config JSON (default: $HATCHERY_AGENT_CONFIG; "
                        "env HATCHERY_AGENT_NAME, HATCHERY_BROKER_HOST, HATCHERY_BROKER_PORT, "
                        "HATCHERY_MANAGER override it)")
    parser.add_argument("--connect-timeout", type=float, default=5.0, metavar="S",
                        help="seconds to wait for the broker (default 5)")
    return parser


def _config(args, require_name: bool) -> AgentConfig:
    try:
        return load_config(args.config, os.environ, require_name=require_name)
    except ValueError as exc:
        raise ToolError(str(exc), EXIT_USAGE) from None


def _session(config: AgentConfig, args):
    # The agent's own credentials; a random client id (the handler holds config.client_id).
    try:
        password = config.password()
    except ValueError as exc:
        raise ToolError(str(exc), EXIT_USAGE) from None
    return bus.session(config.broker_host, config.broker_port, args.connect_timeout,
                       username=config.username, password=password, ca_file=config.ca_file)


def _run(prog: str, body, argv) -> int:
    """The one place that turns errors into a message and an exit code."""
    try:
        return body(argv)
    except ToolError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.code
    except contract.ContractError as exc:
        print(f"{prog}: refused by the contract: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except bus.BusError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def _print_json(payload: dict) -> None:
    print(json.dumps(payload, separators=(",", ":")), flush=True)


# --- bus-publish ----------------------------------------------------------------------

def parse_value(key: str, text: str) -> object:
    """``true``/``false``, an int, a float, else a slug; free text is refused."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if not contract.is_slug(text):
        raise ToolError(f"{key}={text!r} is not a number, true/false or a short slug "
                        "(lowercase letters, digits, '.', '_', '-'; at most 64): free text "
                        "is not allowed on the bus", EXIT_USAGE)
    return text


def parse_pairs(pairs: list) -> dict:
    fields = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not contract.KEY_RE.fullmatch(key):
            raise ToolError(f"{pair!r}: expected key=value with a lowercase key", EXIT_USAGE)
        fields[key] = parse_value(key, text)
    return fields


def build_payload(kind: str, config: AgentConfig, fields: dict) -> dict:
    """Fill the envelope and validate: what bus-publish would send."""
    base = {"v": contract.SCHEMA_VERSION, "ts": contract.now_rfc3339(), "agent": config.name}
    if fields.get("agent", config.name) != config.name:
        raise ToolError(f"agent={fields['agent']!r}: an agent publishes only as itself "
                        f"({config.name})", EXIT_USAGE)
    if kind == "heartbeat":
        beat = {**base, "ok": True, **host_heartbeat_fields(),
                "interval": config.heartbeat_interval, **fields}
        return contract.validate_heartbeat(beat)
    if kind == "alert":
        if "code" not in fields:
            raise ToolError("an alert needs code=SLUG, e.g. code=disk-pressure", EXIT_USAGE)
        return contract.validate_alert({**base, "kind": "alert", **fields})
    if "event" not in fields:
        raise ToolError("a status event needs event=SLUG, e.g. event=cron-failed", EXIT_USAGE)
    return contract.validate_event({**base, "kind": "event", **fields})


def _publish(argv) -> int:
    parser = _parser("bus-publish", "Publish one heartbeat, status event or alert for this "
                     "agent, validated against the fleet contract.",
                     "examples:\n"
                     "  bus-publish heartbeat ok=true\n"
                     "  bus-publish alert code=disk-pressure level=warning\n"
                     "  bus-publish status event=cron-failed job=backup exit=2\n"
                     "  bus-publish alert --json '{\"code\":\"auth-failure\",\"count\":3}'")
    parser.add_argument("kind", choices=PUBLISH_KINDS)
    parser.add_argument("fields", nargs="*", metavar="key=value",
                        help="numbers, true/false or slugs; never free text")
    parser.add_argument("--json", dest="json_text", metavar="OBJECT",
                        help="the fields as one JSON object instead of key=value")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the validated payload and topic; do not send")
    args = parser.parse_args(argv)
    config = _config(args, require_name=True)
    payload = build_payload(args.kind, config, _fields(args))
    data = contract.encode(payload)
    topic = contract.topic(config.name, args.kind)
    if not args.dry_run:
        with _session(config, args) as client:
            bus.publish_and_wait(client, topic, data, retain=args.kind == "heartbeat",
                                 timeout=args.connect_timeout)
    _print_json({"topic": topic, "payload": payload})
    return 0


def _fields(args) -> dict:
    if args.json_text is None:
        return parse_pairs(args.fields)
    if args.fields:
        raise ToolError("give key=value fields or --json, not both", EXIT_USAGE)
    try:
        fields = json.loads(args.json_text)
    except ValueError as exc:
        raise ToolError(f"--json is not valid JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(fields, dict):
        raise ToolError("--json must be a JSON object", EXIT_USAGE)
    return fields


# --- bus-subscribe ----------------------------------------------------------------------

class Collector:
    """Messages from the network thread, handed to the main thread through a queue."""

    def __init__(self) -> None:
        self.items: list = []
        self.cond = threading.Condition()

    def on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.items.append((message.topic, message.payload, message.retain))
            self.cond.notify()

    def take(self, deadline: float | None):
        """The next message, or None once ``deadline`` (monotonic) has passed."""
        with self.cond:
            while not self.items:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self.cond.wait(left if left is not None else 1.0)
            return self.items.pop(0)


def describe(topic: str, payload: bytes, retained: bool) -> dict:
    """One output line; an invalid payload is described, never echoed."""
    line = {"topic": topic, "retained": retained}
    try:
        line["payload"] = contract.decode(payload)
    except contract.ContractError as exc:
        line["invalid"] = exc.reason
        line["size"] = len(payload)
    return line


def _subscribe(argv) -> int:
    parser = _parser("bus-subscribe", "Print fleet messages, one JSON object per line.")
    parser.add_argument("kind", nargs="?", choices=contract.KINDS,
                        help="heartbeat, status, alert or command (default: all)")
    parser.add_argument("--agent", help="only this agent (default: every agent)")
    parser.add_argument("--count", type=int, help="exit after N messages")
    parser.add_argument("--timeout", type=float, help="exit after S seconds "
                        "(status 1 if --count was not reached)")
    args = parser.parse_args(argv)
    config = _config(args, require_name=False)
    topic = f"{contract.FLEET_PREFIX}/{_agent(args.agent)}/{args.kind or '+'}"
    collector = Collector()
    deadline = time.monotonic() + args.timeout if args.timeout is not None else None
    with _session(config, args) as client:
        client.on_message = collector.on_message
        client.subscribe(topic, qos=1)
        seen = _drain(collector, deadline, args.count)
    if args.count is not None and seen < args.count:
        raise ToolError(f"{seen} of {args.count} messages on {topic} within {args.timeout:g}s")
    return 0


def _agent(name: str | None) -> str:
    if name is None:
        return "+"
    problem = contract.name_problem(name)
    if problem:
        raise ToolError(f"--agent: {problem}", EXIT_USAGE)
    return name


def _drain(collector: Collector, deadline: float | None, count: int | None) -> int:
    seen = 0
    while count is None or seen < count:
        item = collector.take(deadline)
        if item is None:
            break
        _print_json(describe(*item))
        seen += 1
    return seen


# --- bus-command ---------------------------------------------------------------------

def _command(argv) -> int:
    parser = _parser("bus-command", "Send one fleet command and print the replies "
                     "(one JSON object per line).",
                     "exit status: 0 when every reply is ok; 1 on a failed reply or when "
                     "nobody answered in time.")
    parser.add_argument("verb", choices=contract.VERBS)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--agent", help="send to fleet/AGENT/command")
    target.add_argument("--broadcast", action="store_true",
                        help="send to {manager}/broadcast and collect every reply")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for replies (default 5)")
    parser.add_argument("--expect", type=int, help="with --broadcast: stop after N replies")
    args = parser.parse_args(argv)
    config = _config(args, require_name=False)
    command = contract.make_command(args.verb, uuid.uuid4().hex)
    wanted = 1 if args.agent else args.expect
    if args.agent:
        destination, replies_from = contract.topic(_agent(args.agent), "command"), args.agent
    else:
        destination, replies_from = contract.broadcast_topic(config.manager), "+"
    with _session(config, args) as client:
        collector = Collector()
        client.on_message = collector.on_message
        _subscribe_and_wait(client, f"{contract.FLEET_PREFIX}/{replies_from}/status",
                            args.connect_timeout)
        bus.publish_and_wait(client, destination, contract.encode(command),
                             timeout=args.connect_timeout)
        replies = _collect_replies(collector, command["id"], args.timeout, wanted)
    if not replies:
        raise ToolError(f"no reply to {args.verb} within {args.timeout:g}s")
    return 0 if all(reply["ok"] for reply in replies) else EXIT_FAILURE


def _subscribe_and_wait(client: mqtt.Client, topic: str, timeout: float) -> None:
    # The reply may come back in a millisecond: be subscribed before sending.
    done = threading.Event()
    client.on_subscribe = lambda *_: done.set()
    client.subscribe(topic, qos=1)
    if not done.wait(timeout):
        raise bus.BusError(f"no SUBACK for {topic} within {timeout:g}s")


def _collect_replies(collector: Collector, command_id: str, timeout: float,
                     wanted: int | None) -> list:
    replies = []
    deadline = time.monotonic() + timeout
    while wanted is None or len(replies) < wanted:
        item = collector.take(deadline)
        if item is None:
            break
        reply = _as_reply(item[1], command_id)
        if reply is not None:
            _print_json(reply)
            replies.append(reply)
    return replies


def _as_reply(payload: bytes, command_id: str) -> dict | None:
    try:
        reply = contract.decode(payload)
    except contract.ContractError:
        return None
    if reply.get("kind") != "reply" or reply.get("id") != command_id:
        return None
    return reply if isinstance(reply.get("ok"), bool) else None


# --- bus-heartbeat ---------------------------------------------------------------------

def _heartbeat(argv) -> int:
    parser = _parser("bus-heartbeat", "Publish one retained heartbeat with host metrics "
                     "(uptime, memory in use, load) and exit; for cron or launchd.")
    args = parser.parse_args(argv)
    config = _config(args, require_name=True)
    beat = build_payload("heartbeat", config, {})
    with _session(config, args) as client:
        bus.publish_and_wait(client, contract.topic(config.name, "heartbeat"),
                             contract.encode(beat), retain=True, timeout=args.connect_timeout)
    return 0


# --- entry points ------------------------------------------------------------------------

def publish_main(argv: list | None = None) -> int:
    return _run("bus-publish", _publish, argv)


def subscribe_main(argv: list | None = None) -> int:
    return _run("bus-subscribe", _subscribe, argv)


def command_main(argv: list | None = None) -> int:
    return _run("bus-command", _command, argv)


def heartbeat_main(argv: list | None = None) -> int:
    return _run("bus-heartbeat", _heartbeat, argv)
