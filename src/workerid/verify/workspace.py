"""A session's directories, owned so the worker user can write what it must."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from .servers import Options


def worker_user(opts: Options) -> tuple[int, int]:
    entry = pwd.getpwnam(opts.user)
    return entry.pw_uid, entry.pw_gid


def prepare_dirs(root: Path, opts: Options) -> None:
    """Directories: run dir readable by all, state and lock dirs the worker user's own."""
    uid, gid = worker_user(opts)
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # noqa: S103 - the worker user must reach its dirs inside
    for path, mode in ((opts.run_dir, 0o755), (opts.state_dir, 0o755), (opts.lock_dir, 0o700)):
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        os.chmod(path, mode)
    os.chown(opts.state_dir, uid, gid)
    os.chown(opts.lock_dir, uid, gid)
