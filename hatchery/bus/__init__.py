"""The manager's side of the bus: one MQTT client, the connection built from the
inventory and the state directory, and the command verbs sent over it.
"""

# Private topics for ping and snapshot markers: the ACL grants them, so it names them
# (security.acl, pure code without paho); re-exported here for the bus's own modules.
from hatchery.security.acl import PROBE_PREFIX

__all__ = ["PROBE_PREFIX"]
