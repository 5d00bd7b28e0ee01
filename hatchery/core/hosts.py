"""Per-host work in parallel, like fabric's ThreadingGroup and GroupResult.

Which host an agent is on is the inventory's business (``inventory.placement``);
here a host is only a name with a plan.

Each host's plan is made and applied in its own thread; a host that cannot be
reached (its engine or sshd down) becomes one failed item naming it, and the
other hosts go on. The report keeps one result per item and a summary per host.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

from hatchery.core.plan import (
    CHANGED,
    FAILED,
    OK,
    WOULD_CHANGE,
    Action,
    ItemResult,
    Report,
    apply_plan,
)
from hatchery.errors import HatcheryError

MAX_THREADS = 8         # hosts worked on at once; the engines do the heavy lifting
LOCAL_HOST = "local"    # the name of this machine among the hosts (inventory.placement names the others)


def apply_per_host(title: str, common: list, per_host: dict, *, check: bool = False,
                   on_result: Optional[Callable] = None, on_start: Optional[Callable] = None) -> Report:
    """Apply ``common`` first (in order), then each host's plan (``{host: () -> [Change]}``)
    in parallel. The report's ``hosts`` maps each host to its summary."""
    report = apply_plan(title, common, check=check, on_result=on_result, on_start=on_start)
    lock = threading.Lock()
    on_result, on_start = _serialised(on_result, lock), _serialised(on_start, lock)

    def one(host: str, plan: Callable) -> tuple:
        started = time.monotonic()
        try:
            changes = plan()
        except HatcheryError as exc:    # unreachable engine or sshd: this host only
            result = ItemResult(item=f"host {host}", status=FAILED, action=Action.PLAN, error=str(exc))
            if on_result:
                on_result(result)
            return [result], time.monotonic() - started, str(exc).splitlines()[0]
        done = apply_plan(title, changes, check=check, on_result=on_result, on_start=on_start)
        return done.results, time.monotonic() - started, ""

    with ThreadPoolExecutor(max_workers=max(1, min(MAX_THREADS, len(per_host)))) as pool:
        futures = {host: pool.submit(one, host, plan) for host, plan in per_host.items()}
    for host, future in futures.items():
        results, seconds, error = future.result()
        report.results += results
        report.hosts[host] = host_summary(results, seconds, error)
    if set(report.hosts) <= {LOCAL_HOST}:
        report.hosts.clear()        # one machine: nothing to summarise per host
    return report


def host_summary(results: list, seconds: float, error: str = "") -> dict:
    counts = {status: sum(r.status == status for r in results) for status in (OK, CHANGED, WOULD_CHANGE, FAILED)}
    summary = {"ok": counts[OK], "changed": counts[CHANGED] + counts[WOULD_CHANGE],
               "failed": counts[FAILED], "seconds": round(seconds, 2)}
    if error:
        summary["error"] = error
    return summary


def _serialised(callback: Optional[Callable], lock: threading.Lock) -> Optional[Callable]:
    """Output callbacks from several threads, one at a time (whole lines, never interleaved)."""
    if callback is None:
        return None

    def call(arg):
        with lock:
            callback(arg)
    return call
