"""The compiled, immutable route table.

Precedence (documented in ``docs/routing.md``), highest first:

1. host specificity: an exact host, then wildcard hosts (longer suffix first), then routes with no
   host;
2. within a host class, regex paths (``~``) before prefixes; prefixes longest first (by segments);
3. ``priority`` (higher first);
4. more conditions (methods, headers) before fewer;
5. the older route (lower id).

Lookup is an index by host, then a segment trie: the cost follows the depth of the request path
and the number of routes sharing one prefix, not the number of routes. Regex routes are the one
linear part and are tried in precedence order within their host class; they run on RE2
(:mod:`route_regex`), so each costs time linear in the path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import CompiledRoute
from .hosts import canonical_host, split_host
from .route_regex import RegexSet, RouteRegex, compile_route_regex

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class RouteMatch:
    """Built per request, so a plain (not frozen) dataclass: frozen ones initialise slower."""

    route: CompiledRoute
    matched: str  # the part of the canonical path the route's path consumed
    remainder: str  # what follows it (starts with "/" or is empty)


@dataclass(frozen=True, slots=True)
class _Entry:
    route: CompiledRoute
    path: str  # "/api" or the regex source
    regex: RouteRegex | None
    key: tuple[int, ...]  # precedence within one host class; lower sorts first


@dataclass(slots=True)
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    entries: list[_Entry] = field(default_factory=list)


def _segments(path: str) -> list[str]:
    return [segment for segment in path.split("/") if segment]


class _PathIndex:
    """Routes of one host class: regexes in order, prefixes in a segment trie."""

    def __init__(self) -> None:
        self.root = _Node()
        self.regexes: list[tuple[_Entry, RouteRegex]] = []  # each with its entry's regex
        self.regex_set: RegexSet | None = None

    def add(self, entry: _Entry) -> None:
        if entry.regex is not None:
            self.regexes.append((entry, entry.regex))
            return
        node = self.root
        for segment in _segments(entry.path):
            node = node.children.setdefault(segment, _Node())
        node.entries.append(entry)

    def freeze(self) -> None:
        self.regexes.sort(key=lambda pair: pair[0].key)
        if self.regexes:
            self.regex_set = RegexSet([regex for _, regex in self.regexes])
        stack = [self.root]
        while stack:
            node = stack.pop()
            node.entries.sort(key=lambda e: e.key)
            stack.extend(node.children.values())

    def match(self, method: str, path: str, environ: Mapping[str, Any]) -> RouteMatch | None:
        if self.regex_set is not None:
            found = self._regex_match(self.regex_set, method, path, environ)
            if found is not None:
                return found
        visited = [self.root]
        node = self.root
        for segment in _segments(path):
            child = node.children.get(segment)
            if child is None:
                break
            node = child
            visited.append(node)
        for node in reversed(visited):
            for entry in node.entries:
                if entry.route.accepts(method, environ) is None:
                    return _prefix_match(entry, path)
        return None

    def _regex_match(
        self, regex_set: RegexSet, method: str, path: str, environ: Mapping[str, Any]
    ) -> RouteMatch | None:
        """The first regex entry, in precedence order, that takes the path; one RE2 pass (over
        ``regex_set``, this index's) says which regexes match at all, and only those are run
        again for where their match ends."""
        encoded = path.encode("utf-8")
        for index in regex_set.matching(encoded):
            entry, regex = self.regexes[index]
            end = regex.match_end(path, encoded)
            if end is None:
                continue
            matched, rest = path[:end], path[end:]
            # Like prefixes, a regex matches whole segments: ~/users/\d+ takes /users/42 and
            # /users/42/posts, not /users/42abc.
            if rest[:1] not in ("/", "") and not matched.endswith("/"):
                continue
            if entry.route.accepts(method, environ) is None:
                return RouteMatch(
                    entry.route, matched, rest if rest[:1] in ("/", "") else "/" + rest
                )
        return None


def _prefix_match(entry: _Entry, path: str) -> RouteMatch:
    if entry.path == "/":
        return RouteMatch(entry.route, "", path)
    return RouteMatch(entry.route, entry.path, path[len(entry.path) :])


class RouteTable:
    """Immutable after construction; build a new one to change routes."""

    def __init__(self, routes: Iterable[CompiledRoute]) -> None:
        self.routes = tuple(sorted(routes, key=lambda r: r.id))
        self._exact: dict[str, _PathIndex] = {}
        self._wildcard: dict[str, _PathIndex] = {}  # "example.com" for "*.example.com"
        self._any = _PathIndex()
        for route in self.routes:
            for index, host_rank in self._indexes_for(route):
                for path in route.paths or ("/",):
                    try:
                        index.add(_make_entry(route, path, host_rank))
                    except ValueError as exc:  # saved before RE2 was required (check W004)
                        logger.error(
                            "Route %r: left out %r, a regex that %s", route.name, path, exc
                        )
        for index in (*self._exact.values(), *self._wildcard.values(), self._any):
            index.freeze()
        self._has_hosts = bool(self._exact or self._wildcard)
        # Longest suffixes first, so "*.a.example.com" beats "*.example.com"; with a port first.
        self._wildcard_suffixes = sorted(
            self._wildcard, key=lambda s: (-s.count("."), ":" not in s, s)
        )

    def _indexes_for(self, route: CompiledRoute) -> Iterator[tuple[_PathIndex, tuple[int, ...]]]:
        if not route.hosts:
            yield self._any, (2,)
        for pattern in map(canonical_host, route.hosts):
            if pattern.startswith("*."):
                suffix = pattern[2:]
                yield self._wildcard.setdefault(suffix, _PathIndex()), (1, -suffix.count("."))
            else:
                yield self._exact.setdefault(pattern, _PathIndex()), (0,)

    def __len__(self) -> int:
        return len(self.routes)

    def _host_indexes(self, host: str) -> Iterator[_PathIndex]:
        host = canonical_host(host)
        name, port = split_host(host)
        for key in (host, name) if port else (host,):
            index = self._exact.get(key)
            if index is not None:
                yield index
        for suffix in self._wildcard_suffixes:
            if port and suffix.endswith(":" + port):
                bare_suffix = suffix.rpartition(":")[0]
                if name.endswith("." + bare_suffix):
                    yield self._wildcard[suffix]
            elif ":" not in suffix and name.endswith("." + suffix):
                yield self._wildcard[suffix]
        yield self._any

    def match(
        self, method: str, host: str, path: str, environ: Mapping[str, Any] | None = None
    ) -> RouteMatch | None:
        """The winning route for a canonical ``path``, or ``None`` to let Django serve it.

        ``host`` may be spelled as the client sent it: it is put in :func:`canonical_host` form
        here, so no caller can match ``gw.test.`` differently from ``gw.test``.
        """
        environ = environ or {}
        if not self._has_hosts:  # the common case: no route names a host
            return self._any.match(method, path, environ)
        for index in self._host_indexes(host):
            found = index.match(method, path, environ)
            if found is not None:
                return found
        return None

    def ordered_entries(self) -> list[tuple[str, str, CompiledRoute]]:
        """Every (host, path, route) in the order the matcher considers them, for ``gateway_routes``."""
        rows: list[tuple[str, str, CompiledRoute]] = []
        for host, index in [
            *sorted(self._exact.items(), key=lambda item: _exact_order(item[0])),
            *((f"*.{s}", self._wildcard[s]) for s in self._wildcard_suffixes),
            ("*", self._any),
        ]:
            entries = [entry for entry, _ in index.regexes]
            stack = [index.root]
            while stack:
                node = stack.pop()
                entries.extend(node.entries)
                stack.extend(node.children.values())
            entries.sort(key=lambda e: e.key)
            rows.extend((host, e.path, e.route) for e in entries)
        return rows


def _exact_order(host: str) -> tuple[str, bool, str]:
    """``a.com:8080`` is tried before ``a.com`` for a request to port 8080, so list it first."""
    name, port = split_host(host)
    return (name, not port, host)


def _make_entry(route: CompiledRoute, path: str, host_rank: tuple[int, ...]) -> _Entry:
    regex = compile_route_regex(path[1:]) if path.startswith("~") else None
    length = -1 if regex else len(_segments(path))
    key = (*host_rank, 0 if regex else 1, -length, -route.priority, -route.specificity, route.id)
    return _Entry(route=route, path=path, regex=regex, key=key)
