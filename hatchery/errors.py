"""One root error class; third-party errors are converted at the boundary.

Every error carries a message and, where we know it, the fix. Exit codes:
1 = the operation ran and something in the fleet failed (an agent did not
answer, a check failed); 2 = the request itself was wrong (bad inventory,
bad flag) and nothing was changed; 3 = an environment problem (broker or
Docker engine unreachable, a program missing).
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3


class HatcheryError(Exception):
    """Root of every error the library raises on purpose."""

    exit_code = EXIT_ENVIRONMENT

    def __init__(self, message: str, fix: str = ""):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message


class UsageError(HatcheryError):
    """A wrong flag or argument; nothing was changed."""

    exit_code = EXIT_USAGE


class InventoryError(UsageError):
    """The inventory is invalid; ``problems`` lists each with file:line and key path."""

    def __init__(self, path: str, problems: list["Problem"]):
        self.path = path
        self.problems = problems
        count = f"{len(problems)} problem{'' if len(problems) == 1 else 's'}"   # errors imports nothing
        lines = [f"{path}: {count} in the inventory; nothing was changed"]
        lines += [f"  {p}" for p in problems]
        super().__init__("\n".join(lines))


class Problem:
    """One inventory problem: where it is, what is wrong, and how to fix it."""

    def __init__(self, path: str, line: int | None, keypath: str, message: str, fix: str = ""):
        self.path, self.line, self.keypath = path, line, keypath
        self.message, self.fix = message, fix

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        text = f"{where}: {self.keypath}: {self.message}"
        return f"{text} (fix: {self.fix})" if self.fix else text

    def as_dict(self) -> dict:
        return {"file": self.path, "line": self.line, "key": self.keypath,
                "message": self.message, "fix": self.fix}


class RenderError(UsageError):
    """A template could not be rendered (missing variable, syntax error)."""


class BusError(HatcheryError):
    """The broker could not be reached or refused us.

    One concept, two classes: ``agent_kit.bus.BusError`` is the agent kit's
    (stdlib + paho only, it cannot derive from this root). The control side
    never lets that one escape: ``hatchery.bus.client`` converts it here, at
    its one boundary, adding the fix and the exit code (3, environment).
    """


class RuntimeFailure(HatcheryError):
    """A process or container could not be started, stopped or inspected."""


class DockerError(RuntimeFailure):
    """The Docker engine refused or failed an operation."""


class DnsError(RuntimeFailure):
    """A DNS provider could not register or unregister a name."""
