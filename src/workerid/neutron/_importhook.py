"""Run a function on a module right after it is imported, or now if it already is.

Patching Neutron from a hook rather than by importing it ourselves keeps
``install()`` from changing Neutron's import order (eventlet, oslo.config
option registration): each patch lands exactly when Neutron loads the module.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

Patch = Callable[[ModuleType], None]

_pending: dict[str, list[Patch]] = {}
_lock = threading.Lock()


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loader of the modules we wait for."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader: Any = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        real_exec = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            real_exec(module)
            with _lock:
                patches = _pending.pop(fullname, [])
            for patch in patches:
                patch(module)

        # Each spec has its own loader instance (SourceFileLoader(name, path)),
        # so shadowing the method on the instance touches nothing else.
        loader.exec_module = exec_module
        return spec


_finder = _Finder()


def when_imported(name: str, patch: Patch) -> None:
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _pending.setdefault(name, []).append(patch)
            if _finder not in sys.meta_path:
                sys.meta_path.insert(0, _finder)
            return
    patch(module)
