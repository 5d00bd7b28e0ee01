"""hatchery: the control side. Provisioning and fleet operations over MQTT.

The library raises ``HatcheryError`` subclasses and returns result objects;
only ``hatchery.output`` prints, and only ``hatchery.tasks`` turns errors into
exit codes.
"""

from agent_kit import __version__  # one version for both halves

__all__ = ["__version__"]
