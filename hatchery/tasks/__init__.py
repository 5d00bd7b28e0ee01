"""The invoke namespace: broker, agent, fleet collections and a top-level verify."""

from invoke import Collection

from .agent import agent
from .broker import broker
from .fleet import fleet
from .verify import verify

namespace = Collection(broker, agent, fleet, verify)
