"""The manager's side of the bus: one MQTT client, the connection built from the
inventory and the state directory, and the command verbs sent over it.
"""
