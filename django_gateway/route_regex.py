"""Route regexes run on RE2: matching time is linear in the path, whatever the pattern.

Python's ``re`` backtracks. A route like ``~^/(a+)+$`` then costs time exponential in the number of
``a``s of *every* request the table tries it on, routed or not: one admin (or anyone who can
register a Consul service with a ``gateway.route`` tag) could stall every worker. RE2 (what Envoy's
``safe_regex`` uses) guarantees linear time by leaving out the constructs that need backtracking:
lookaround, backreferences, possessive quantifiers and atomic groups, and repetition counts over
1000. A pattern using one is refused when the route is validated, with an error naming it.
"""

from __future__ import annotations

import re2

#: Longest regex source accepted (a route path, a host and a regex all have bounded length).
MAX_LENGTH = 1024

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error is raised to the caller; RE2's own log would go to stderr

#: RE2's error text, by the start of what it quotes, as the construct a person would look up.
_CONSTRUCTS = (
    ("invalid perl operator: (?=", "a lookahead (?=...)"),
    ("invalid perl operator: (?!", "a negative lookahead (?!...)"),
    ("invalid perl operator: (?<=", "a lookbehind (?<=...)"),
    ("invalid perl operator: (?<!", "a negative lookbehind (?<!...)"),
    ("invalid perl operator: (?>", "an atomic group (?>...)"),
    ("invalid perl operator: (?P", "a named backreference or recursion (?P=...), (?P>...)"),
    ("invalid escape sequence: \\1", "a backreference"),
    ("invalid escape sequence: \\2", "a backreference"),
    ("bad repetition operator: ++", "a possessive quantifier ++"),
    ("bad repetition operator: *+", "a possessive quantifier *+"),
    ("bad repetition operator: ?+", "a possessive quantifier ?+"),
    ("invalid repetition size", "a repetition count over 1000 (nested counts multiply)"),
    ("pattern too large", "a pattern too large for RE2's memory budget"),
)


class RouteRegex:
    """A compiled route regex; :meth:`match_end` is all routing needs of it."""

    __slots__ = ("_regexp", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._regexp = re2.compile(pattern.encode("utf-8"), _OPTIONS)

    def match_end(self, path: str, encoded: bytes | None = None) -> int | None:
        """Where a match anchored at the start of ``path`` ends (a ``str`` index), or ``None``.

        ``encoded`` is ``path`` in UTF-8 when the caller has it already (RE2 works on bytes).
        """
        if encoded is None:
            encoded = path.encode("utf-8")
        found = self._regexp.match(encoded)
        if found is None:
            return None
        end = found.end()
        return end if len(encoded) == len(path) else len(encoded[:end].decode("utf-8"))


class RegexSet:
    """Several route regexes asked at once: which of them match the start of a path.

    One RE2 pass over the path answers for every regex of a host class, so a path that no regex
    takes (most of them, in a table with a few regex routes) costs one call, not one per regex.
    """

    __slots__ = ("_all", "_set")

    def __init__(self, regexes: list[RouteRegex]) -> None:
        self._all = list(range(len(regexes)))
        self._set: re2.Set | None = re2.Set.MatchSet(_OPTIONS)
        try:
            for regex in regexes:
                self._set.Add(regex.pattern.encode("utf-8"))
            self._set.Compile()
        except re2.error:  # over RE2's memory budget for one set: ask each regex in turn
            self._set = None

    def matching(self, encoded: bytes) -> list[int]:
        """Indexes of the regexes that match, in the order they were given; empty when none."""
        if self._set is None:
            return self._all
        found = self._set.Match(encoded)
        return sorted(found) if found else []


def compile_route_regex(pattern: str) -> RouteRegex:
    """Compile ``pattern`` (the part after ``~``), or raise ``ValueError`` saying what to change."""
    if len(pattern) > MAX_LENGTH:
        raise ValueError(f"is longer than {MAX_LENGTH} characters")
    try:
        return RouteRegex(pattern)
    except re2.error as exc:
        message = exc.args[0] if exc.args else str(exc)
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        construct = next((name for start, name in _CONSTRUCTS if message.startswith(start)), None)
        if construct is None:
            raise ValueError(f"does not compile: {message}") from exc
        raise ValueError(
            f"uses {construct}, which RE2 does not support (route regexes run in linear time; "
            f"RE2 says: {message})"
        ) from exc
