"""agent_kit: what runs inside every agent.

Standard library and paho-mqtt only: this package is copied into every agent
container, so it must never import the control side (``hatchery``).
"""

__version__ = "0.1.0"
