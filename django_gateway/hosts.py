"""Host names: one normalisation for route tables, wildcards, ``preserve_host``, logs and the tester.

A Host header can be spelled many ways that Django's ``ALLOWED_HOSTS`` treats as one name:
``GW.test``, ``gw.test.`` (the fully qualified form with its root dot), ``gw.test.:443``. If the
route table compared them literally, a client could pick a host-less route over the host's own
(and skip its authentication) just by adding a dot. So every consumer of a request's host asks
:func:`canonical_host`, and configured host patterns are stored in the same form by
:func:`ascii_host_name`:

- lower case;
- one trailing dot removed from the name (``gw.test.`` is ``gw.test``);
- the port kept apart (``name:port`` routes are tried before ``name`` routes);
- internationalised names as IDNA A-labels (``bücher.example`` is stored as
  ``xn--bcher-kva.example``), which is what clients send: HTTP Host headers are ASCII.

A name with an empty label (``gw..test``, ``.gw.test``, ``gw.test..``) is not a host name; the
gateway refuses such a request instead of guessing (:func:`malformed`).
"""

from __future__ import annotations

import idna

#: RFC 1035: a name is at most 253 characters written out (255 octets on the wire).
MAX_NAME_LENGTH = 253


def split_host(host: str) -> tuple[str, str]:
    """``("name", "port")`` of a canonical or raw ``Host`` value; IPv6 literals keep brackets."""
    if host.endswith("]"):  # "[::1]" has colons but no port
        return host, ""
    name, sep, port = host.rpartition(":")
    if not sep or name.endswith(":"):  # no colon, or a bare IPv6 address without brackets
        return host, ""
    return name, port


def canonical_host(host: str) -> str:
    """The form a request's Host takes for routing and everything after: ``name`` or
    ``name:port``, lower case, one trailing dot removed. Cheap on the usual spellings."""
    host = host.lower()
    if not host.endswith(".") and ".:" not in host:  # no trailing dot before the end or a port
        return host
    name, port = split_host(host)
    name = name.removesuffix(".")
    return f"{name}:{port}" if port else name


def malformed(canonical: str) -> bool:
    """Whether a canonical host has an empty label (``a..b``, ``.a``, ``a..``): not a name."""
    return (
        ".." in canonical
        or canonical.startswith(".")
        or canonical.endswith(".")
        or ".:" in canonical
    )


def ascii_host_name(name: str) -> str:
    """A configured host name (wildcard label allowed) as lower-case ASCII A-labels.

    Raises ``ValueError`` with a message a person can act on. Uses UTS #46 processing without
    transitional mapping, as current browsers do, so ``straße.de`` is ``xn--strae-oqa.de``.
    """
    name = name.lower().removesuffix(".")
    if name.isascii():
        return name
    wildcard = name.startswith("*.")
    try:
        encoded = idna.encode(name[2:] if wildcard else name, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"{name!r} is not a valid internationalised host name: {exc}") from exc
    return f"*.{encoded}" if wildcard else encoded
