"""The invoke namespace: broker, agent, fleet, bus, images, swarm collections and a top-level verify."""

from invoke import Collection

from hatchery.tasks.agent import agent
from hatchery.tasks.broker import broker
from hatchery.tasks.bus import bus
from hatchery.tasks.capacity import register as register_capacity
from hatchery.tasks.common import name_tasks
from hatchery.tasks.dayops import register as register_dayops
from hatchery.tasks.fleet import fleet
from hatchery.tasks.images import images
from hatchery.tasks.swarm import swarm
from hatchery.tasks.verify import verify
from hatchery.tasks.views import register as register_views

register_views(fleet)   # fleet.dashboard, fleet.top
register_capacity(fleet)    # fleet.capacity
register_dayops(fleet, agent)   # agent.restart, fleet.rollout, fleet.heal
namespace = Collection(broker, agent, fleet, bus, images, swarm, verify)
name_tasks(namespace)
