"""Running the `paymux` command as a user would: the venv's script, a clean environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["fresh_env", "paymux_command"]

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def paymux_command() -> list[str]:
    """The venv's `paymux` script (what `make run` calls), else the same entry point via -m."""
    script = Path(sys.executable).with_name("paymux")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "paymux.cli"]


def fresh_env(**extra: str) -> dict[str, str]:
    """This process's environment as on a fresh machine: no PAYMUX_* settings, no proxies."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PAYMUX_") and k.lower() not in _PROXY_VARS
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env
