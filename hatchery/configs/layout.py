"""Where things are, as the broker and each handler see them: their runtime's answer.

A rendered config names paths and ports as the process that reads it sees
them: the local runtime's broker reads the state directory, the docker
runtime's reads its container's mounts. The renderers (``configs.broker``,
``configs.agent``) take these values and never ask which runtime runs the
process; each runtime builds them (``Runtime.broker_layout``,
``Runtime.agent_layout``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hatchery.core.paths import BROADCAST, PASSWORD, SIGNING_KEY

# The broker's auth files, by name: the runtimes write them into its conf_dir.
PASSWORD_FILE, ACL_FILE = "passwd", "acl"


@dataclass(frozen=True)
class BrokerLayout:
    """The broker as its runtime runs it."""

    conf_dir: str                   # the directory of mosquitto.conf, passwd and acl
    data_dir: str                   # persistence
    log_file: str = ""              # '' : stdout (the runtime keeps it)
    port: int = 1883                # the plain listener, as the broker binds it
    bind: str = ""                  # '' : every interface (what is published decides who reaches it)
    tls_port: int = 8883
    tls_bind: str = ""
    tls_files: dict = field(default_factory=dict)   # cafile/certfile/keyfile as the broker reads them
    control_socket: str = ""        # the control side's own listener (a unix socket); '' : none
    user: str = ""                  # the user Mosquitto drops to

    def auth_paths(self) -> dict:
        """Where the broker reads its password and ACL files."""
        return {"password_file": f"{self.conf_dir}/{PASSWORD_FILE}", "acl_file": f"{self.conf_dir}/{ACL_FILE}"}


@dataclass(frozen=True)
class AgentLayout:
    """One agent's handler as its runtime runs it."""

    broker_host: str                # what the handler connects to
    broker_port: int
    ca_file: Optional[str] = None   # the fleet CA it verifies the broker with (None: plain MQTT)
    # {PASSWORD, SIGNING_KEY, BROADCAST: path}: the credential files as the handler reads them
    credential_files: dict = field(default_factory=dict)
    extra_hosts: dict = field(default_factory=dict)     # name -> address its resolver must know
    # how soon the handler notices a broker gone without a word (a lost node sends no RST), and
    # the longest wait between its reconnects; None: agent_kit's defaults (60 s and 30 s)
    keepalive: Optional[int] = None
    reconnect_max: Optional[int] = None


CREDENTIAL_FILES = (PASSWORD, SIGNING_KEY, BROADCAST)
