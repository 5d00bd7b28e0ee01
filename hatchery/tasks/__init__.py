"""The invoke namespace: broker, agent, fleet collections and a top-level verify."""

from invoke import Collection

from .agent import agent
from .broker import broker
from .bus import bus
from .fleet import fleet
from .images import images
from .verify import verify

namespace = Collection(broker, agent, fleet, bus, images, verify)
