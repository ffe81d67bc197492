"""The form of join_address: `auto`, `none`, or an interface name, host name or IP address, with an optional
`:PORT` (IPv6 in brackets: `[fd00::5]:7000`). Whether the name exists on rank 0's node is checked there
(cluster/listen.py): the job file may be validated on a login node."""
from __future__ import annotations

import re
from typing import Optional

_FORM = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9_.\-]+))(?::(?P<port>\d{1,5}))?$")


def split_join_address(text: str) -> tuple[str, int]:
    """(name, port) of a valid join_address; port 0 means any free port."""
    match = _FORM.match(text.strip())
    if match is None:
        raise ValueError(text)
    return match.group("v6") or match.group("name"), int(match.group("port") or 0)


def join_address_problem(text: str) -> Optional[str]:
    """Why `text` is no join_address, or None."""
    try:
        _, port = split_join_address(text)
    except ValueError:
        return ("must be auto, none, or an interface, host name or IP address with an optional :PORT "
                "(e.g. ib0, 10.1.2.3:7000)")
    if port > 65535:
        return "the port must be from 0 (any free port) to 65535"
    return None
