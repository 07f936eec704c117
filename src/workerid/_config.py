"""Configuration: ``configure(...)`` keyword arguments and ``WORKERID_*`` variables.

Precedence, highest first: ``configure()``, then the environment, then what
the loader detects, then defaults. Explicit always beats detected.

Environment values that do not parse are ignored with a warning, never fatal:
a typo in a unit file must not take the application down.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends import BackendURL

log = logging.getLogger("workerid")

DEFAULT_MAX_SLOTS = 64
MAX_MAX_SLOTS = 4096
DEFAULT_SETTLE_TIMEOUT = 5.0

ENV_DIR = "WORKERID_DIR"
ENV_NAMESPACE = "WORKERID_NAMESPACE"
ENV_COUNT = "WORKERID_COUNT"
ENV_MAX_SLOTS = "WORKERID_MAX_SLOTS"
ENV_BACKEND = "WORKERID_BACKEND"
ENV_DEPLOY = "WORKERID_DEPLOY"

_NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the user asked for explicitly; ``None`` means "detect"."""

    lock_dir: str | None = None
    namespace: str | None = None
    worker_count: int | None = None
    max_slots: int | None = None
    settle_timeout: float | None = None
    #: a coordination engine for IDs across hosts (``None``: the lock directory only)
    backend: BackendURL | None = None
    #: why WORKERID_BACKEND was refused: then there is no worker ID at all
    #: (falling back to host-local IDs would silently share them across hosts)
    backend_error: str | None = None
    #: called from the keep-alive thread with the new Identity when the
    #: backend claim changes (lost, claimed again)
    on_change: Callable[[Any], None] | None = None
    #: the user's name for this deploy (a release id): ``once(scope="deploy")``
    #: runs once per (namespace, deploy, name), across hosts with a backend
    deploy: str | None = None
    #: where each explicit value came from: "config" or "env"
    origin: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: environment values that were ignored, and why (they go to ``degraded``)
    notes: tuple[str, ...] = ()


ROOT_LOCK_DIR = "/run/workerid"


def default_lock_dir() -> str:
    """``/run/workerid`` for root; else ``$XDG_RUNTIME_DIR/workerid`` or ``<tmp>/workerid-<uid>``.

    Root's state stays out of world-writable temp dirs, where another user
    could make ``/tmp/workerid-0`` first, and in ``/run``: a tmpfs emptied at
    boot, which systemd-tmpfiles does not age. Other users cannot write
    ``/run``; servers usually run without ``XDG_RUNTIME_DIR``, so the temp
    dir gives each user their own ``0700`` directory (one made by somebody
    else is refused, never used). Under systemd's ``PrivateTmp`` all
    processes of one unit still share it, which is all we need (workers of
    one server are always in one unit).
    """
    if os.geteuid() == 0:
        return ROOT_LOCK_DIR
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return os.path.join(runtime, "workerid")
    # Not tempfile.gettempdir(): importing tempfile costs milliseconds in
    # every freshly forked worker, and its probing of candidates is not needed.
    tmp = os.environ.get("TMPDIR", "")
    base = tmp if os.path.isabs(tmp) else "/tmp"  # noqa: S108
    return os.path.join(base, f"workerid-{os.geteuid()}")


def check_namespace(value: str) -> str:
    """Validate a namespace: 1-64 chars of ``[A-Za-z0-9._-]``, not starting with a dot."""
    if not isinstance(value, str) or not _NAMESPACE_RE.fullmatch(value):
        raise ValueError(
            f"namespace {value!r} must be 1-64 characters of letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return value


def safe_namespace(value: str) -> str:
    """Turn any detected name (an Apache process group, say) into a namespace."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", value).lstrip("._-")[:64]
    return cleaned or "default"


#: longest deploy name (it goes into etcd keys and PostgreSQL rows as is)
MAX_DEPLOY = 128


def check_deploy(value: str) -> str:
    """A deploy name: 1..128 printable characters, no spaces; raises ``ValueError``."""
    deploy = value.strip()
    if not deploy:
        raise ValueError("deploy must not be empty")
    if len(deploy) > MAX_DEPLOY:
        raise ValueError(f"deploy must be at most {MAX_DEPLOY} characters, got {len(deploy)}")
    if not deploy.isprintable() or any(c.isspace() for c in deploy):
        raise ValueError(f"deploy {deploy!r} must be printable characters without spaces")
    return deploy


def _positive_int(name: str, raw: object, upper: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise TypeError(f"{name} must be an int, not {type(raw).__name__}")
    value = int(raw)
    if not 1 <= value <= upper:
        raise ValueError(f"{name} must be between 1 and {upper}, got {value}")
    return value


#: every variable :func:`from_env` reads
ENV_VARS = (ENV_DIR, ENV_NAMESPACE, ENV_COUNT, ENV_MAX_SLOTS, ENV_BACKEND, ENV_DEPLOY)


def from_env(environ: Mapping[str, str], explicit: Settings) -> Settings:
    """Fill what ``configure()`` left open from the environment.

    With none of :data:`ENV_VARS` set (or all empty), ``explicit`` itself:
    the parse below would copy it field by field and change nothing, and it
    costs a fresh worker's first call tens of µs (issue 14).
    """
    if not explicit.notes and not any(environ.get(var) for var in ENV_VARS):
        return explicit
    values = {f.name: getattr(explicit, f.name) for f in dataclasses.fields(explicit)}
    origin = dict(explicit.origin)
    notes: list[str] = []
    parsers = {
        "lock_dir": (ENV_DIR, _parse_dir),
        "namespace": (ENV_NAMESPACE, check_namespace),
        "worker_count": (ENV_COUNT, lambda v: _positive_int(ENV_COUNT, v.strip(), MAX_MAX_SLOTS)),
        "max_slots": (
            ENV_MAX_SLOTS,
            lambda v: _positive_int(ENV_MAX_SLOTS, v.strip(), MAX_MAX_SLOTS),
        ),
        "deploy": (ENV_DEPLOY, check_deploy),
    }
    for field, (var, parse) in parsers.items():
        if values[field] is not None or not environ.get(var):
            continue
        try:
            values[field] = parse(environ[var])
        except (TypeError, ValueError) as exc:
            notes.append(f"ignoring {var}={environ[var]!r}: {exc}")
            continue
        origin[field] = "env"
    if values["backend"] is None and environ.get(ENV_BACKEND, "").strip():
        from . import backends

        try:
            values["backend"] = backends.parse(environ[ENV_BACKEND])
            origin["backend"] = "env"
        except (TypeError, ValueError) as exc:
            values["backend_error"] = f"{ENV_BACKEND} refused: {exc}; worker_id is None"
    values["origin"] = origin
    values["notes"] = tuple(notes)
    return Settings(**values)


def _parse_dir(value: str) -> str:
    if not os.path.isabs(value):
        raise ValueError("must be an absolute path")
    return os.path.normpath(value)


def explicit_settings(
    *,
    lock_dir: str | os.PathLike[str] | None,
    namespace: str | None,
    worker_count: int | None,
    max_slots: int | None,
    settle_timeout: float | None,
    backend: str | None = None,
    on_change: Callable[[Any], None] | None = None,
    deploy: str | None = None,
) -> Settings:
    """Validate ``configure()`` arguments; raises ``TypeError``/``ValueError``.

    Every message starts with the argument's name.
    """

    def count(name: str, value: object) -> int:
        # an int (a str of digits is accepted, as it always was)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if isinstance(value, str) and not value.strip().isdigit():
            raise ValueError(f"{name} must be an int, got {value!r}")
        return _positive_int(name, value, MAX_MAX_SLOTS)

    origin: dict[str, str] = {}
    path: str | None = None
    if lock_dir is not None:
        try:
            raw = os.fspath(lock_dir)
        except TypeError:
            raise TypeError(
                f"lock_dir must be a str or os.PathLike, not {type(lock_dir).__name__}"
            ) from None
        if not isinstance(raw, str):
            raise TypeError(f"lock_dir must be a str path, not {type(raw).__name__}")
        if not os.path.isabs(raw):
            raise ValueError(f"lock_dir must be an absolute path, got {raw!r}")
        path = os.path.normpath(raw)
        origin["lock_dir"] = "config"
    if namespace is not None:
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str, not {type(namespace).__name__}")
        check_namespace(namespace)  # "namespace '...' must be ..."
        origin["namespace"] = "config"
    if worker_count is not None:
        worker_count = count("worker_count", worker_count)
        origin["worker_count"] = "config"
    if max_slots is not None:
        max_slots = count("max_slots", max_slots)
        origin["max_slots"] = "config"
    if settle_timeout is not None:
        if isinstance(settle_timeout, bool) or not isinstance(settle_timeout, int | float):
            raise TypeError(
                f"settle_timeout must be a number of seconds, not {type(settle_timeout).__name__}"
            )
        if settle_timeout < 0:
            raise ValueError(f"settle_timeout must be >= 0 seconds, got {settle_timeout!r}")
        settle_timeout = float(settle_timeout)
    parsed: BackendURL | None = None
    if backend is not None:
        from . import backends

        parsed = backends.parse(backend)  # "backend ...: ..." (TypeError/ValueError)
        origin["backend"] = "config"
    if on_change is not None and not callable(on_change):
        raise TypeError(f"on_change must be callable, not {type(on_change).__name__}")
    if deploy is not None:
        if not isinstance(deploy, str):
            raise TypeError(f"deploy must be a str, not {type(deploy).__name__}")
        deploy = check_deploy(deploy)  # "deploy ..."
        origin["deploy"] = "config"
    return Settings(
        lock_dir=path,
        namespace=namespace,
        worker_count=worker_count,
        max_slots=max_slots,
        settle_timeout=settle_timeout,
        backend=parsed,
        on_change=on_change,
        deploy=deploy,
        origin=origin,
    )
