"""The manager's side of the bus: one MQTT client, the connection built from the
inventory and the state directory, and the command verbs sent over it.
"""

# Private topics for ping and snapshot markers. Here, not in client.py, so the
# pure ACL code can name them without importing paho (~50 ms at start-up).
PROBE_PREFIX = "hatchery/probe"
