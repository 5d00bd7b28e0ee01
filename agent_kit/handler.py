"""bus-command-handler: the long-running process in every agent.

The command line, the one-handler-per-agent lock and the signals around one
``CommandHandler`` (``agent_kit.commandhandler``: the verbs, drops, alerts and
heartbeats). Runtimes start it as ``python -m agent_kit.handler`` and find
running handlers by that module name; images install it as the
``bus-command-handler`` script (``agent_kit.handler:main``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from dataclasses import replace

from . import __version__
from .commandhandler import CommandHandler
from .config import AgentConfig, load_config

log = logging.getLogger("agent_kit.handler")


def parse_args(argv: list | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bus-command-handler",
        description="Answer fleet commands (health-check, version-report, config-reload, "
                    "status-report) on the agent's MQTT topics; drop everything else.")
    parser.add_argument("--config", help="agent config JSON (default: $HATCHERY_AGENT_CONFIG)")
    parser.add_argument("--keepalive", type=int, help="MQTT keepalive in seconds "
                        "(the Last Will fires after 1.5x this); overrides the config")
    parser.add_argument("--lock", help="hold an exclusive lock on this file while running; "
                        "exit 3 at once if another handler holds it (one handler per agent)")
    parser.add_argument("--verbose", action="store_true", help="log debug lines too")
    return parser.parse_args(argv)


EXIT_LOCKED = 3


def hold_lock(path: str):
    """Take an exclusive flock on ``path`` for the life of the process.

    Returns the open file (keep it: closing it releases the lock), or None when
    another process holds it. The kernel drops the lock when the holder dies,
    even by SIGKILL, so a crash never leaves a stale lock behind. The holder's
    pid is written into the file, for people reading it.
    """
    import fcntl
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = load_config(args.config, os.environ)
        if args.keepalive:
            config = _with_keepalive(config, args.keepalive)
        # reads the credential files: fail early
        handler = CommandHandler(config, replay_file=replay_file(config, args.config))
    except ValueError as exc:
        print(f"bus-command-handler: {exc}", file=sys.stderr)
        return 2
    try:
        lock = hold_lock(args.lock) if args.lock else None
    except OSError as exc:
        print(f"bus-command-handler: cannot lock {args.lock}: {exc.strerror}", file=sys.stderr)
        return EXIT_LOCKED
    if args.lock and lock is None:   # before connecting: a second handler must not kick the first
        print(f"bus-command-handler: another handler for {config.name} holds {args.lock}; "
              "exiting", file=sys.stderr)
        return EXIT_LOCKED
    try:
        return run(config, handler)
    finally:
        if lock:
            lock.close()


def replay_file(config: AgentConfig, config_path: str | None) -> str:
    """Where the replay cache persists: beside the config file when that directory is
    writable (the local runtime's agent directory), else the temp directory."""
    path = config_path or os.environ.get("HATCHERY_AGENT_CONFIG")
    directory = os.path.dirname(os.path.abspath(path)) if path else ""
    if not directory or not os.access(directory, os.W_OK):
        directory = tempfile.gettempdir()
    return os.path.join(directory, f".{config.name}.replay-cache")


def _with_keepalive(config: AgentConfig, keepalive: int) -> AgentConfig:
    if keepalive < 1:
        raise ValueError(f"--keepalive must be at least 1, got {keepalive}")
    return replace(config, keepalive=keepalive)


def run(config: AgentConfig, handler: CommandHandler | None = None) -> int:
    """Run until SIGTERM or SIGINT, then stop cleanly and return 0."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    handler = handler or CommandHandler(config)
    handler.start()
    log.info("%s: handler %s started (pid %d)", config.name, __version__, os.getpid())
    while not stop.wait(1.0):
        pass
    handler.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
