"""Old code beside new: a git ref unpacked into a temporary tree, run from there.

``--baseline REF`` in the benches measures the code of REF and the working
tree side by side, in one run, against the same broker and fleet. The ref is
unpacked with ``git archive`` into a temporary directory (no worktree is
registered, nothing in the repository changes) and run with ``PYTHONPATH``
pointing at it, which puts its ``hatchery`` and ``agent_kit`` ahead of the
editable install of the working tree. ``code_env`` does that; ``describe``
says which code a run used, so a report can never mix them up silently.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]


def unpack(ref: str) -> Path:
    """The tree of ``ref`` in a fresh temporary directory (removed at exit)."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    folder = Path(tempfile.mkdtemp(prefix=f"hatchery-{commit[:10]}-"))
    atexit.register(shutil.rmtree, folder, True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder)
    (folder / ".baseline-commit").write_text(commit + "\n")
    return folder


def code_env(tree: Optional[Path], base: Optional[dict] = None) -> dict:
    """The environment that runs ``tree``'s code (None: the working tree, as installed)."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONDONTWRITEBYTECODE", None)    # measure what an installed tool costs
    if tree is None:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = str(tree)
    return env


def describe(tree: Optional[Path]) -> str:
    """The commit a tree holds: the baseline's, or the working tree's HEAD (+ "dirty")."""
    if tree is not None:
        return (tree / ".baseline-commit").read_text().strip()[:10]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=10", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return head + ("+dirty" if dirty else "")


def trees(baseline: Optional[str]) -> list:
    """[(label, tree)]: the working tree as "new", and the baseline as "old" when given."""
    found = [("new", None)]
    if baseline:
        found.append(("old", unpack(baseline)))
    return found
