"""Where rank 0 listens for worker groups (`mpibatch join`): only on the interface the user or the site
names. join_address `auto` is MPIBATCH_JOIN_ADDRESS when the site sets it, else the address this node's
host name resolves to (the name the cluster gives the node); `none` listens nowhere."""
from __future__ import annotations

import os
import socket
from typing import Optional

import psutil

from ..config import ConfigError
from ..config.listen_syntax import join_address_problem, split_join_address

SITE_ENV = "MPIBATCH_JOIN_ADDRESS"


def listen_address(setting: str, env: Optional[dict[str, str]] = None) -> Optional[tuple[str, int]]:
    """(IP address, port) to listen on, None for nowhere; ConfigError naming join_address if this node has
    no such interface or address."""
    env = dict(os.environ) if env is None else env
    text = setting.strip()
    key = "join_address"
    if text == "auto" and env.get(SITE_ENV, "").strip():
        text, key = env[SITE_ENV].strip(), SITE_ENV
        problem = join_address_problem(text)
        if problem:
            raise ConfigError(f"{key}: '{text}' {problem}")
    if text == "none":
        return None
    name, port = split_join_address(text)
    if name == "auto":
        return _host_address(), port
    interfaces = psutil.net_if_addrs()
    if name in interfaces:
        for family in (socket.AF_INET, socket.AF_INET6):
            found = [a.address.split("%")[0] for a in interfaces[name] if a.family == family]
            if found:
                return found[0], port
        raise ConfigError(f"{key}: interface '{name}' has no IP address on {socket.gethostname()}")
    try:
        address = socket.getaddrinfo(name, None)[0][4][0]
    except socket.gaierror:
        raise ConfigError(f"{key}: '{name}' is neither an interface of {socket.gethostname()} "
                          f"({', '.join(sorted(interfaces))}) nor a host name it resolves") from None
    ours = {a.address.split("%")[0] for addresses in interfaces.values() for a in addresses}
    if address not in ours:
        raise ConfigError(f"{key}: {name} ({address}) is not an address of {socket.gethostname()}, "
                          "where rank 0 runs")
    return address, port


def _host_address() -> str:
    """The address this node's host name resolves to; loopback when it resolves to nothing."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
