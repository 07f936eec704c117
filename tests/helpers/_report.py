"""Write a report atomically (shared by the helper scripts; no workerid import)."""

from __future__ import annotations

import json
import os


def write(path: str, data: dict[str, object]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
