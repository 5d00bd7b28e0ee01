"""fleet.heal's decisions: who looks down, what the runtime says, when to restart. Pure.

The ``Supervisor`` reads the fleet through a ``FleetState`` (fed by whoever
holds the bus) and the operator's intent (``read_book``, re-read every
tick), and acts through functions it is handed: ``confirm`` (the runtime's
word, ``operate.confirm``), ``restart`` and ``record`` (the alert). Tests
hand it fixtures for all of them and a fixed clock; no broker, no runtime.

One agent's suspicion is an ``Episode``: it starts when the fold judges the
agent offline, stale or unknown (or its runtime reports it unhealthy) while
the operator wants it running, and ends when it is judged online again or
the operator's intent changes (agent.stop, retire, a rollout's lease).
Within an episode the runtime is asked again only when something changed
on the bus, after a restart's grace, or every ``recheck`` seconds, never
more often than ``reconfirm_gap``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from hatchery.core.intent import Intent
from hatchery.observe.fleetstate import DOWN, FleetState, Verdict
from hatchery.operate.confirm import ALIVE, GONE, HUNG, UNASKED, Confirmation

DEFAULT_BUDGET = 5
DEFAULT_WINDOW = 600.0
RESTARTED, FAILED, LEFT_DOWN, WOULD_RESTART = "restarted", "failed", "left-down", "would-restart"
MISMATCH, UNCONFIRMED, CONFLICT = "mismatch", "unconfirmed", "conflicting-replies"
# A runtime that reschedules (a cluster) restarts and moves its agents itself: heal says so,
# says where it brought one back, and alerts when it cannot place one or when two instances
# of one agent take turns on its login (a partition healing).
LEFT_TO_RUNTIME, RESCHEDULED, UNPLACEABLE, DUEL = "left-to-runtime", "rescheduled", "unplaceable", "duelling"
UNPLACEABLE_MARK = "cannot place"
UNHEALTHY_RUNTIME = "unhealthy-container"     # the reason when the runtime, not the bus, said so


@dataclass
class Policy:
    budget: int = DEFAULT_BUDGET            # restarts per agent within window
    window: float = DEFAULT_WINDOW
    stale: Optional[float] = None           # None: twice each agent's heartbeat interval
    backoff: float = 1.0                    # first wait between restarts; doubles
    backoff_max: float = 60.0
    survey_every: float = 5.0               # seconds between asks of the runtimes for unhealthy agents
    grace: float = 5.0                      # seconds a (re)started agent has to come online
    runtime_first: float = 3.0              # a runtime that restarts crashed agents gets this long first,
    restarting_after: float = 1.0           # unless after this long it is waiting out its own backoff
    runtime_poll: float = 0.25              # how often its state is read meanwhile (no probe: cheap)
    hung_after: float = 3.0                 # a running agent silent this long to a health-check is hung
    settle: float = 5.0                     # an 'unknown' (broker restarted) has this long to re-announce
    recheck: float = 30.0                   # a contradicted suspicion is confirmed again this often
    reconfirm_gap: float = 1.0              # never ask the runtime about one agent more often


@dataclass
class HealAction:
    agent: str
    reason: str                             # what the bus said: offline | stale | unknown | unhealthy-container
    action: str                             # restarted | failed | left-down | would-restart | mismatch | ...
    detail: str = ""
    restarts: int = 0                       # restarts within the window, this one included
    finding: str = ""                       # what the runtime said: gone | unhealthy | hung | alive | unasked
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict:
        return {**self.__dict__, "ts": iso(self.at)}


def iso(at: float) -> str:
    """Epoch seconds as UTC ISO 8601 with milliseconds, for log lines."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


class Tracker:
    """One agent's restart history: backoff and budget. Pure; the clock is passed in."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.restarts: deque = deque()
        self.next_allowed = 0.0
        self.given_up = False
        self.grace_until = 0.0

    def recent(self, now: float) -> int:
        while self.restarts and now - self.restarts[0] > self.policy.window:
            self.restarts.popleft()
        return len(self.restarts)

    def decide(self, now: float) -> str:
        """'restart', 'wait' (backoff or grace) or 'give-up' (budget spent, alert once)."""
        if self.given_up:
            return "wait"
        if now < max(self.next_allowed, self.grace_until):
            return "wait"
        if self.recent(now) >= self.policy.budget:
            self.given_up = True
            return "give-up"
        return "restart"

    def restarted(self, now: float) -> int:
        self.restarts.append(now)
        count = self.recent(now)
        delay = min(self.policy.backoff * 2 ** (count - 1), self.policy.backoff_max)
        self.next_allowed = now + delay
        self.grace_until = now + self.policy.grace
        return count

    def came_back(self) -> None:
        """Online again: a later crash gets a restart, after the backoff still running."""
        self.given_up = False
        self.grace_until = 0.0


@dataclass
class Episode:
    """One suspicion of one agent, from the bus saying it is down until it is back."""

    reason: str                             # the bus verdict that started it
    since: float                            # wall time it started
    confirmed_at: Optional[float] = None    # the runtime's last word, when
    changed: bool = False                   # the bus said something new since then
    pending: bool = False                   # confirmed down, but the tracker said wait
    told_unasked: bool = False
    told_runtime: bool = False              # left to a runtime that reschedules (said once)
    told_unplaceable: bool = False


class Supervisor:
    """The decisions of ``fleet.heal``: one ``tick`` per look at the fleet."""

    def __init__(self, state: FleetState, policy: Policy, *, read_book: Callable,
                 confirm: Callable[[list, list], dict], restart: Callable[[str], tuple],
                 record: Callable[[HealAction], None], restarts_itself: Callable[[str], bool],
                 runtime_unhealthy: Callable[[], set] = set, check: bool = False,
                 reschedules: Callable[[str], bool] = lambda name: False):
        self.state, self.policy = state, policy
        self.read_book, self.confirm, self.restart, self.record = read_book, confirm, restart, record
        self.restarts_itself, self.runtime_unhealthy, self.check = restarts_itself, runtime_unhealthy, check
        self.reschedules = reschedules
        self.duels: dict = {}               # agent -> the instances seen taking turns (alerted once)
        self.trackers: dict = {}
        self.episodes: dict = {}
        self.seen = 0                       # the FleetState version already looked at
        self.unhealthy: set = set()
        self.next_survey = 0.0

    def tracker(self, name: str) -> Tracker:
        return self.trackers.setdefault(name, Tracker(self.policy))

    def tick(self, now: float, names: Optional[list] = None) -> None:
        """Look at ``names`` (default: the whole inventory) and act on what is due."""
        book = self.read_book()
        self.seen, changed = self.state.changes_since(self.seen)
        changed_names = {facts.name for facts in changed}
        if now >= self.next_survey:
            self.unhealthy = set(self.runtime_unhealthy())
            self.next_survey = now + self.policy.survey_every
        look = list(self.state.intervals) if names is None else \
            [n for n in self.state.intervals if n in set(names) | changed_names | set(self.episodes)]
        self._duels(now, [n for n in look if self.reschedules(n)])
        due = [j.agent for j in self.state.judge_all(book, threshold=self.policy.stale, now=now, names=look)
               if self._suspect(j, now, changed_names) and self._due(j.agent, now)]
        if due:
            # within its runtime's own turn only the runtime's state matters: no health-check wait
            early = [n for n in due if self.restarts_itself(n)
                     and now - self.episodes[n].since < self.policy.runtime_first]
            confirmations = self.confirm(due, early)
            for name in due:
                self._decide(name, confirmations[name], now)

    # --- who is suspect, and when to ask ----------------------------------------------

    def _suspect(self, judgement, now: float, changed: set) -> bool:
        name = judgement.agent
        reason = self._reason(judgement)
        if reason is None:
            ended = self.episodes.pop(name, None)
            if judgement.verdict is Verdict.ONLINE and name in self.trackers:
                self.trackers[name].came_back()
            if ended is not None and ended.told_runtime and judgement.verdict is Verdict.ONLINE:
                self._rescheduled(name, ended)
            return False
        episode = self.episodes.get(name)
        if episode is None:
            episode = self.episodes[name] = Episode(reason, now)
        episode.changed = episode.changed or name in changed
        return True

    def _reason(self, judgement) -> Optional[str]:
        """Why ``judgement`` makes its agent suspect, or None: only agents meant to run."""
        if judgement.intent is not Intent.RUNNING:
            return None
        if judgement.verdict in DOWN:
            return str(judgement.verdict)
        return UNHEALTHY_RUNTIME if judgement.agent in self.unhealthy else None

    def _due(self, name: str, now: float) -> bool:
        episode, tracker, policy = self.episodes[name], self.tracker(name), self.policy
        age = now - episode.since
        if tracker.given_up or now < tracker.next_allowed:
            return False                    # left down until it is back, or the backoff runs
        if episode.reason == str(Verdict.UNKNOWN) and age < policy.settle:
            return False                    # a broker restart: agents re-announce within seconds
        if self.restarts_itself(name) and age < policy.runtime_poll:
            return False                    # the runtime's restart policy goes first
        if episode.confirmed_at is None:
            return True
        since_asked = now - episode.confirmed_at
        in_runtimes_turn = self.restarts_itself(name) and age < policy.runtime_first
        if since_asked < (policy.runtime_poll if in_runtimes_turn else policy.reconfirm_gap):
            return False
        if episode.changed or episode.pending:
            return True
        if now < tracker.grace_until:
            return False                    # restarted: its birth is on the way
        return tracker.grace_until > episode.confirmed_at or since_asked >= policy.recheck

    # --- what to do with the runtime's word ---------------------------------------------

    def _decide(self, name: str, confirmation: Confirmation, now: float) -> None:
        episode, tracker = self.episodes[name], self.tracker(name)
        episode.confirmed_at, episode.changed, episode.pending = now, False, False
        if confirmation.conflict:
            self._act(name, CONFLICT, confirmation, "contradictory replies to one health-check id: "
                      "something else answers as this agent")
        if self.reschedules(name):
            self._left_to_runtime(name, confirmation, episode)
            return
        if self._runtime_goes_first(name, confirmation, episode, now):
            episode.pending = True          # asked again after reconfirm_gap, until runtime_first is over
            return
        if confirmation.finding == UNASKED:
            if not episode.told_unasked:
                episode.told_unasked = True
                self._act(name, UNCONFIRMED, confirmation, f"left alone: {confirmation.detail}")
            return
        starting = self._starting(confirmation, episode, tracker, now)
        if confirmation.finding == ALIVE:
            if not starting and self._still_down(name, now):
                self._act(name, MISMATCH, confirmation, f"the bus says {episode.reason}, but the runtime "
                          f"{confirmation.detail}: not restarted")
            return
        if confirmation.finding == HUNG and starting:
            return                          # just (re)started: not connected yet
        self._down(name, confirmation, now)

    # --- a runtime that reschedules: report, never restart ---------------------------------

    def _left_to_runtime(self, name: str, confirmation: Confirmation, episode: Episode) -> None:
        """Say once that the runtime brings it back (and, critical, when it cannot place it)."""
        if UNPLACEABLE_MARK in confirmation.problem and not episode.told_unplaceable:
            episode.told_unplaceable = True
            self._act(name, UNPLACEABLE, confirmation, confirmation.problem)
        if confirmation.down and not episode.told_runtime:
            episode.told_runtime = True
            self._act(name, LEFT_TO_RUNTIME, confirmation, f"{confirmation.finding}: {confirmation.detail}; "
                      "its runtime restarts it and moves it off a lost node: not restarted by heal")
        episode.pending = not confirmation.down     # alive but silent: asked again

    def _rescheduled(self, name: str, ended: Episode) -> None:
        """Back online after it was left to the runtime: where, as which instance."""
        found = self.confirm([name], [name]).get(name)
        if found is None:
            return
        where = f"task {found.instance or '?'} on {found.node or '?'}"
        self.episodes[name] = ended         # _act names the episode's reason
        try:
            self._act(name, RESCHEDULED, found, f"back online: {where}, {self.state.clock() - ended.since:.1f}s "
                      f"after it went {ended.reason}")
        finally:
            self.episodes.pop(name, None)

    def _duels(self, now: float, names: list) -> None:
        """Two instances of one agent taking turns on its login (a partition healing): alert once
        per duel, and have the fleet state show the instance the runtime confirms."""
        for name in names:
            duel = self.state.facts(name).duelling(now)
            if not duel:
                if self.duels.pop(name, None) is not None:
                    self.state.confirm(name, None)
                continue
            if self.duels.get(name) == duel:
                continue
            self.duels[name] = duel
            found = self.confirm([name], [name]).get(name)
            real = found.instance if found is not None and found.instance in duel else None
            self.state.confirm(name, real)
            self.episodes.setdefault(name, Episode(DUEL, now))
            others = ", ".join(i for i in duel if i != real)
            self._act(name, DUEL, found or Confirmation(name, "unasked"),
                      f"instances {', '.join(duel)} take turns on one login; the runtime runs "
                      f"{real or 'neither'} (on {found.node if found else '?'}), shown as the agent; "
                      f"{others} is left over (a partition): its runtime stops it, or agent.hatch does")

    def _runtime_goes_first(self, name: str, confirmation: Confirmation, episode: Episode, now: float) -> bool:
        """Within ``runtime_first`` a runtime that restarts crashed agents is left to do it, unless it
        is only waiting out its own restart backoff (Docker doubles it for every crash of a container
        that ran under 10 s: measured up to 5.9 s), which a restart of ours skips."""
        if not self.restarts_itself(name) or now - episode.since >= self.policy.runtime_first:
            return False
        waiting_out_backoff = confirmation.finding == GONE and confirmation.restarting
        return not (waiting_out_backoff and now - episode.since >= self.policy.restarting_after)

    def _starting(self, confirmation: Confirmation, episode: Episode, tracker: Tracker, now: float) -> bool:
        """Started within its grace: by us (the tracker's grace) or by the runtime since it went down."""
        started = confirmation.started_at
        by_runtime = started is not None and started > episode.since and now - started < self.policy.grace
        return by_runtime or now < tracker.grace_until

    def _still_down(self, name: str, now: float) -> bool:
        """Judged again after the runtime was asked: its birth may have arrived meanwhile."""
        judgement = self.state.judge(name, self.read_book(), threshold=self.policy.stale, now=now)
        return self._reason(judgement) is not None

    def _down(self, name: str, confirmation: Confirmation, now: float) -> None:
        episode, tracker = self.episodes[name], self.tracker(name)
        if not self.read_book().wants_running(name, now):
            self.episodes.pop(name, None)   # stopped, retired or leased while we asked
            return
        tracker.grace_until = 0.0           # confirmed down before its birth: no grace to wait out
        decision = tracker.decide(now)
        if decision == "wait":
            episode.pending = True
            return
        if decision == "give-up":
            count = tracker.recent(now)
            self._act(name, LEFT_DOWN, confirmation, f"{count} restarts within {self.policy.window:g}s; "
                      "left down", restarts=count)
            return
        if self.check:
            self._act(name, WOULD_RESTART, confirmation, confirmation.detail)
            return
        ok, detail = self.restart(name)
        if ok is None:                      # a rollout's lease holds it: not ours to restart
            episode.pending = True
            return
        count = tracker.restarted(now)
        if not ok:
            tracker.grace_until = 0.0       # nothing started: no birth to wait for
        self._act(name, RESTARTED if ok else FAILED, confirmation,
                  f"{confirmation.finding}: {confirmation.detail}; {detail}".rstrip("; "), restarts=count)

    def _act(self, name: str, action: str, confirmation: Confirmation, detail: str, restarts: int = 0) -> None:
        self.record(HealAction(name, self.episodes[name].reason, action, detail[:400], restarts,
                               confirmation.finding, self.state.clock()))
