"""Where Neutron keeps its locks, read the way neutron-server finds its config.

``install()`` runs before Neutron parses its configuration, so it reads the
same files itself: ``$OS_NEUTRON_CONFIG_DIR`` (default ``/etc/neutron/``)
and ``$OS_NEUTRON_CONFIG_FILES`` (``;``-separated, default ``neutron.conf``
and ``plugins/ml2/ml2_conf.ini``), as ``neutron/server/__init__.py``
``_get_config_files`` does; the last file that sets
``[oslo_concurrency] lock_path`` wins, as in oslo.config.
"""

from __future__ import annotations

import configparser
import os

DEFAULT_CONFIG_DIR = "/etc/neutron/"
DEFAULT_CONFIG_FILES = ("neutron.conf", "plugins/ml2/ml2_conf.ini")
#: Ubuntu's and Debian's lock_path for neutron
DEFAULT_LOCK_PATH = "/var/lib/neutron/lock"


def config_files(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    directory = env.get("OS_NEUTRON_CONFIG_DIR", DEFAULT_CONFIG_DIR)
    names = env.get("OS_NEUTRON_CONFIG_FILES", "")
    files = [n for n in names.split(";") if n] or list(DEFAULT_CONFIG_FILES)
    return [os.path.join(directory, f) for f in files]


def _lookup(section: str, key: str, environ: dict[str, str] | None) -> tuple[str, str] | None:
    """The last ``(value, file)`` that sets ``[section] key``, as oslo.config resolves it."""
    found = None
    for path in config_files(environ):
        parser = configparser.RawConfigParser(strict=False)
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f)
        except (OSError, configparser.Error, UnicodeDecodeError):
            continue
        if section == "DEFAULT":
            value = parser.defaults().get(key.lower(), "").strip()
        else:
            value = parser.get(section, key, fallback="").strip()
        if value:
            found = (value, path)
    return found


def option(section: str, key: str, environ: dict[str, str] | None = None) -> str | None:
    found = _lookup(section, key, environ)
    return found[0] if found else None


def lock_path(environ: dict[str, str] | None = None) -> tuple[str, str]:
    """``(lock_path, where it came from)``."""
    found = _lookup("oslo_concurrency", "lock_path", environ)
    if found and os.path.isabs(found[0]):
        return found
    return DEFAULT_LOCK_PATH, "default"
