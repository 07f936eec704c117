"""Neutron's API: JSON requests, the first answer after a start, the ``openstack`` client, and
``workerid neutron-check``."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from workerid.neutron import check

from .constants import API, DB_URL, ETC, GENEVE, OPENSTACK, PROCESSES, STATE, VENV
from .util import log, run


def request(method: str, path: str, body: Any = None, timeout: float = 120) -> tuple[int, Any]:
    return check.api_request(method, API + path, body, timeout=timeout)


def error_type(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("NeutronError", {}).get("type", ""))
    return str(body)[:120]


def create_network(name: str = "") -> tuple[int, Any]:
    """POST /v2.0/networks; (status, the network dict or the error body)."""
    name = name or f"e2e-{uuid.uuid4().hex[:8]}"
    status, body = request("POST", "/v2.0/networks", {"network": {"name": name}})
    if status == 201 and isinstance(body, dict):
        return status, body["network"]
    return status, body


def delete_network(net_id: str) -> int:
    return request("DELETE", f"/v2.0/networks/{net_id}")[0]


@dataclass
class FirstAnswer:
    status: int
    body: Any
    seconds: float  # from just before the start command
    refused: int  # connection attempts refused before the server listened
    earlier: list[str] = field(default_factory=list)  # answers before this one (until_201)
    detail: str = ""  # free text for reports (the benchmark's milestones)


def poll_first_post(t0: float, timeout: float = 180, until_201: bool = False) -> FirstAnswer:
    """POST /v2.0/networks from t0 on until the first HTTP answer (or the first 201).

    Networks created are deleted again.
    """
    refused = 0
    earlier: list[str] = []
    while time.monotonic() - t0 < timeout:
        try:
            status, body = create_network()
        except OSError:  # refused / reset before the server listens
            refused += 1
            time.sleep(0.05)
            continue
        answer = FirstAnswer(status, body, time.monotonic() - t0, refused, list(earlier))
        if status == 201 and isinstance(body, dict):
            delete_network(body["id"])
        if not until_201 or status == 201:
            return answer
        earlier.append(f"{status} {error_type(body)} at {answer.seconds:.2f}s")
        time.sleep(0.05)
    raise AssertionError(f"no {'201' if until_201 else 'answer'} within {timeout}s; {earlier}")


# --- the openstack client --------------------------------------------------------------------


def openstack_env() -> dict[str, str]:
    """As the reference fix's manual check runs the client: no Keystone, Neutron's endpoint."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(STATE),
        "OS_AUTH_TYPE": "none",
        "OS_ENDPOINT": API,
    }


def openstack(*args: str, timeout: float = 120) -> Any:
    """``openstack <args> -f json``: the parsed output (an AssertionError if it fails)."""
    out = run([str(OPENSTACK), *args, "-f", "json"], timeout=timeout, env=openstack_env())
    return json.loads(out) if out.strip() else None


def openstack_quiet(*args: str, timeout: float = 120) -> None:
    """``openstack <args>`` for a command with no output to format (``delete``)."""
    run([str(OPENSTACK), *args], timeout=timeout, env=openstack_env())


def openstack_fails(*args: str, timeout: float = 120) -> tuple[int, str]:
    """``openstack <args>`` expected to fail: (exit code, stdout + stderr)."""
    proc = subprocess.run(
        [str(OPENSTACK), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=openstack_env(),
    )
    return proc.returncode, proc.stdout + proc.stderr


def assert_openstack_client_works(where: str) -> None:
    """The reference fix's manual check, with the real ``openstack`` client (OS_AUTH_TYPE=none):
    network create is geneve with a VNI from the one seeded default range, network segment
    range list shows exactly that range, subnet and port create succeed; all deleted again."""
    name = f"osc-{uuid.uuid4().hex[:8]}"
    net = openstack("network", "create", name)
    try:
        assert net["provider:network_type"] == "geneve", f"{where}: {net}"
        vni = net["provider:segmentation_id"]
        ranges = openstack("network", "segment", "range", "list")
        defaults = [r for r in ranges if r["Default"]]
        assert len(defaults) == 1, f"{where}: {ranges}"
        (rng,) = defaults
        assert (rng["Network Type"], rng["Minimum ID"], rng["Maximum ID"]) == GENEVE, rng
        assert isinstance(vni, int) and rng["Minimum ID"] <= vni <= rng["Maximum ID"], net
        assert name in {n["Name"] for n in openstack("network", "list")}
        subnet = openstack(
            "subnet", "create", "--network", net["id"], "--subnet-range", "10.42.0.0/24", name
        )
        assert subnet["cidr"] == "10.42.0.0/24" and subnet["network_id"] == net["id"], subnet
        port = openstack("port", "create", "--network", net["id"], name)
        assert port["network_id"] == net["id"], port
        assert any(ip.get("subnet_id") == subnet["id"] for ip in port["fixed_ips"]), port
        log(f"openstack client ({where}): network {name} geneve VNI {vni}, subnet, port")
        openstack_quiet("port", "delete", port["id"])
    finally:
        openstack_quiet("network", "delete", net["id"])  # its subnet goes with it


# --- workerid neutron-check ------------------------------------------------------------------


def neutron_check(workers: int = PROCESSES, api: bool = True) -> tuple[int, str]:
    """`workerid neutron-check --workers N` from Neutron's venv: (exit code, its output)."""
    cmd = [str(VENV / "bin/workerid"), "neutron-check", "--db-url", DB_URL]
    cmd += ["--workers", str(workers)] + (["--api", API] if api else [])
    env = {**os.environ, "OS_NEUTRON_CONFIG_DIR": str(ETC)}
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180, env=env)
    return proc.returncode, proc.stdout + proc.stderr
