"""The Docker runtime's decisions: facts in, ``Change``s out, and no engine asked.

The planners (``agents``, ``broker``) read what runs now into one of the small
values below: the container's status and its ``docker inspect`` read back into
the ``ContainerSpec.summary`` shape, whether the image is on the engine,
whether the mounted files are stale. A pure ``decide_*`` names the change and
why; the planner binds it to its diff and apply step.
``tests/plans/docker/*.json`` are cases of facts in, actions and reasons out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hatchery.core.plan import Action, Change
from hatchery.runtime.decisions import decide_running_broker
from hatchery.runtime.docker.containers import differences
from hatchery.runtime.docker.engine import CONFIG_HASH


# --- an agent's container --------------------------------------------------------------------

@dataclass(frozen=True)
class AgentFacts:
    status: Optional[str] = None        # the container's (running, exited, ...); None: no container
    short_id: str = ""
    summary: dict = field(default_factory=dict)   # what it runs, read back in the summary shape
    image_cached: bool = False          # the wanted image (its tag) is on the engine
    stale_secrets: bool = False         # the mounted credential files or CA differ from the wanted


@dataclass(frozen=True)
class AgentWanted:
    name: str
    summary: dict                       # ContainerSpec.summary() of the wanted container
    build: str = ""                     # what building its image takes (baseimage.describe)

    @property
    def tag(self) -> str:
        return str(self.summary.get("image", "?")).rsplit(":", 1)[-1]


def decide_agent(facts: AgentFacts, wanted: AgentWanted) -> list:
    item = f"agent {wanted.name}"
    built = "image cached" if facts.image_cached else f"image to build ({wanted.build})"
    if facts.status is None:
        return [Change(item, Action.CREATE, f"no container; {built}")]
    changed = differences(facts.summary, wanted.summary)
    if changed:
        return [Change(item, Action.RECREATE, f"outdated: {what_changed(facts.summary, wanted.summary, changed)}; {built}")]
    if facts.status != "running":
        return [Change(item, Action.START, f"container {facts.status}")]
    if facts.stale_secrets:
        return [Change(item, Action.RESTART, "credential files differ from the state directory")]
    return [Change(item, Action.NONE, f"running ({facts.short_id}), {wanted.tag}")]


def what_changed(current: dict, wanted: dict, changed: list) -> str:
    """'image a → b, config c → d, env changed': what makes a running container outdated."""
    parts = []
    if "image" in changed:
        parts.append(f"image {_tag(current.get('image'))} → {_tag(wanted['image'])}")
    if "labels" in changed:
        old = (current.get("labels") or {}).get(CONFIG_HASH)
        new = (wanted.get("labels") or {}).get(CONFIG_HASH)
        parts.append(f"config {old or '?'} → {new}" if old != new else "labels changed")
    parts += [f"{key} changed" for key in changed if key not in ("image", "labels")]
    return ", ".join(parts)


def _tag(image: Optional[str]) -> str:
    return (image or "?").rsplit(":", 1)[-1]


# --- the broker's container --------------------------------------------------------------------

@dataclass(frozen=True)
class BrokerFacts:
    status: Optional[str] = None        # None: no container
    short_id: str = ""
    summary: dict = field(default_factory=dict)
    image_moved: bool = False           # its image tag now names another image (a rebuild)
    conf: Optional[str] = None          # the mounted mosquitto.conf
    stale_auth: tuple = ()              # passwd, acl: mounted text not the wanted
    stale_tls: tuple = ()               # TLS files: mounted text not the control side's


@dataclass(frozen=True)
class BrokerWanted:
    summary: dict
    conf: str


def decide_broker(facts: BrokerFacts, wanted: BrokerWanted) -> list:
    """A changed auth file alone is a SIGHUP; TLS files need a restart (Mosquitto 2.0 reads
    certificates at start only)."""
    if facts.status is None:
        return [Change("broker", Action.CREATE, "no container")]
    changed = differences(facts.summary, wanted.summary) + (["image"] if facts.image_moved else [])
    if changed:
        return [Change("broker", Action.RECREATE, f"{', '.join(changed)} changed")]
    if facts.status != "running":
        return [Change("broker", Action.START, f"container {facts.status}")]
    if facts.stale_tls:
        return [Change("broker", Action.RESTART, "TLS files changed; needs a restart")]
    return [decide_running_broker(facts.short_id, facts.conf, wanted.conf, facts.stale_auth,
                                  "config changed; needs a restart")]


# --- a rollback ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RestoreFacts:
    previous: Optional[dict] = None     # previous.json: the image and config before the last recreate


@dataclass(frozen=True)
class RestoreWanted:
    name: str


def decide_restore(facts: RestoreFacts, wanted: RestoreWanted) -> list:
    item, previous = f"agent {wanted.name}", facts.previous
    if not isinstance(previous, dict) or not isinstance(previous.get("config_text"), str):
        return [Change(item, Action.FAILED, "nothing to roll back to: no previous version recorded")]
    return [Change(item, Action.ROLLBACK, f"back to image {previous.get('image')}, config {previous.get('config')}")]


# plan name -> (facts type, wanted type, decide): what tests/plans/docker/*.json exercise
DECISIONS = {"broker": (BrokerFacts, BrokerWanted, decide_broker),
             "agent": (AgentFacts, AgentWanted, decide_agent),
             "restore": (RestoreFacts, RestoreWanted, decide_restore)}
