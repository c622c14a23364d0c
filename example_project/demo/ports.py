"""Whether the demo can have its ports, and if not, which process holds them.

The demo must know this *before* it touches anything: a second ``make demo`` that only failed on
"port already in use" after migrating, re-seeding the shared SQLite file (targets pointing at
its own short-lived upstreams) and revoking the running demo's key left the first demo answering
502, 503 and 401. So the command probes the gateway's address and binds the upstreams' ports
first, and refuses with :func:`describe_holders` naming the process in the way.

Finding the holder is Linux-only and best effort: the listening socket's inode comes from
``/proc/net/tcp`` and ``/proc/net/tcp6``, and the process is one with a file descriptor on that
socket (``/proc/<pid>/fd``). Elsewhere, or when the holder belongs to a user whose descriptors
this one cannot read, the message names the port alone.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

PROC = Path("/proc")
#: ``st`` of a listening socket in /proc/net/tcp*.
TCP_LISTEN = "0A"
#: Enough of a command line to recognise it.
COMMAND_WIDTH = 160


def bind_error(host: str, port: int) -> OSError | None:
    """Why a server could not listen on ``host:port`` now (``None`` when it could).

    The probe binds as ``runserver`` does (``SO_REUSEADDR``, like every ``socketserver``), so a
    connection left in TIME_WAIT by a demo that just stopped does not count as a holder.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        return exc
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc
    return None


def describe_holders(port: int) -> str:
    """``pid 42: python manage.py demo`` for each process listening on ``port``, or a sentence
    saying the holder could not be told."""
    inodes = _listening_inodes(port)
    holders = [f"pid {pid}: {_command_line(pid)}" for pid in _pids_holding(inodes)]
    if holders:
        return "; ".join(holders)
    return f"the process holding port {port} could not be told"


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on ``port`` (any address, IPv4 or IPv6)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
            for line in lines:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == TCP_LISTEN and int(local.rpartition(":")[2], 16) == port:
                    inodes.add(inode)
    inodes.discard("0")
    return inodes


def _pids_holding(inodes: set[str]) -> list[int]:
    """Processes with a descriptor on one of the sockets ``inodes`` (those this user can see)."""
    if not inodes:
        return []
    wanted = {f"socket:[{inode}]" for inode in inodes}
    pids = []
    with contextlib.suppress(OSError):
        entries = sorted((p for p in PROC.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        for process in entries:
            with contextlib.suppress(OSError):  # another user's process, or one that just ended
                if any(os.readlink(fd) in wanted for fd in (process / "fd").iterdir()):
                    pids.append(int(process.name))
    return pids


def _command_line(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "(command line unknown)"
    command = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    if len(command) > COMMAND_WIDTH:
        command = command[: COMMAND_WIDTH - 1] + "…"
    return command or "(command line unknown)"
