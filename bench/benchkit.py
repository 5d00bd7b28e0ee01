"""Pieces the benchmarks share: a headless Chromium, stopping what a run started, its figures.

A plain module beside the benchmarks (``sys.path`` has ``bench/``); the view tests
use its Chromium too, so a page is measured and tested in the same browser.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

from fleet_bench import stop

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-background-networking",
                  "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900",
                  "--disable-extensions", "--no-first-run")


def installed(binary: str, package: str) -> str:
    """The path of ``binary``, or an error that says which package brings it."""
    path = shutil.which(binary)
    if not path:
        raise RuntimeError(f"{binary} is not installed: apt-get install -y {package} "
                           "(scripts/setup.sh --test does)")
    return path


def chromium(binary: Optional[str] = None, driver: Optional[str] = None):
    """Headless Debian Chromium driven by selenium through Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary or installed("chromium", "chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    service = Service(executable_path=driver or installed("chromedriver", "chromium-driver"))
    return webdriver.Chrome(service=service, options=options)


def stop_all(procs: list) -> None:
    """Stop what a run started, last started first; a closed stdin tells simfleet to go."""
    for proc in reversed(procs):
        if proc.stdin:
            proc.stdin.close()
        stop(proc)


def report(figures: dict, out: Optional[Path]) -> None:
    """The figures as one JSON line, and with ``--out`` as a file too."""
    print(json.dumps(figures))
    if out:
        out.write_text(json.dumps(figures, indent=2) + "\n")
