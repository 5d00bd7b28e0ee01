"""Decisions every runtime shares: facts in, a ``Change`` out, nothing read or touched.

A runtime's own ``decide.py`` settles what only it knows (a process, a container)
and hands the step they take alike to a function here.
"""

from __future__ import annotations

from typing import Optional

from hatchery.configs.broker import reload_is_enough
from hatchery.core.plan import Action, Change


def decide_running_broker(running: str, conf: Optional[str], wanted: str, stale_auth: tuple,
                          restart: str) -> Change:
    """A broker that runs as it should, but for its config: nothing to do, a SIGHUP (only
    reloadable settings or the auth files differ) or a restart, ``restart`` saying why.
    ``running`` names what runs ('pid 42', a container's short id); ``conf`` is its
    mosquitto.conf now, ``stale_auth`` the auth files (passwd, acl) not as wanted."""
    if conf == wanted and not stale_auth:
        return Change("broker", Action.NONE, f"running ({running}), config unchanged")
    if reload_is_enough(conf or "", wanted):
        what = "config" if conf != wanted else " and ".join(stale_auth)
        return Change("broker", Action.RELOAD, f"{what} changed; SIGHUP is enough")
    return Change("broker", Action.RESTART, restart)
