"""Where the project's own files live: templates/ and roles/ beside the package."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = PROJECT_ROOT / "templates"
ROLES = PROJECT_ROOT / "roles"
