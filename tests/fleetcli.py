"""The real CLI (``invoke <task>``) run on a test's own inventory.

A plain module beside conftest.py (test modules import it by name, as they import
``conftest``): the environment names the inventory and turns colour off, so the
output the tests read is the operator's plain text.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]


def env_for(inventory: Path) -> dict:
    return {**os.environ, "FLEET_INVENTORY": str(inventory), "NO_COLOR": "1"}


def run(*args, inventory: Path, check=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``invoke *args`` to its end; with ``check``, the exit code it must give."""
    proc = subprocess.run([*INVOKE, *args], capture_output=True, text=True,
                          env=env_for(inventory), timeout=timeout)
    if check is not None:
        assert proc.returncode == check, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc
