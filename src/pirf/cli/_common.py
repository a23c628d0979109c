"""Shared helpers of the CLI commands: consoles and JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console(stderr=False)
console_err = Console(stderr=True)


def emit_json(payload: dict[str, Any]) -> None:
    """Write one JSON object to stdout (nothing else goes to stdout with ``--json``)."""
    sys.stdout.write(json.dumps(payload, indent=None, sort_keys=False) + "\n")
    sys.stdout.flush()
