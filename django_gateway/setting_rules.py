"""What a ``GATEWAY`` setting accepts: one small rule per kind of value, checked and described.

A rule both checks a value (:meth:`ValueRule.problem`, the end of an E005 message) and says what it
accepts (:attr:`ValueRule.text`, the "allowed values" column of ``docs/settings.md``), so the docs
cannot promise something the check does not do. The rules are plain frozen values used by
:mod:`django_gateway.settings_table`; they import nothing from Django or from the gateway.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Protocol, TypeGuard

#: What a default can be (a user's value is checked by the setting's rule, so it is ``object``).
Value = bool | int | float | str | list[str] | None

# WSGI servers drop headers spelled with underscores, so API key header names must use dashes.
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")


def literal(value: Value) -> str:
    """``value`` as the docs write it: Python syntax with double-quoted strings (``"iss"``)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return f"[{', '.join(literal(item) for item in value)}]"
    return repr(value)


def _figure(number: float) -> str:
    """A range bound for reading: ``86,400`` rather than ``86400``; fractions as written."""
    return f"{number:,}" if isinstance(number, int) else repr(number)


def _is_number(value: object) -> TypeGuard[int | float]:
    """``True`` is an ``int`` to Python, never a number of seconds to a user."""
    return isinstance(value, int | float) and not isinstance(value, bool)


class ValueRule(Protocol):
    """What a setting accepts: checked by :meth:`problem`, described by :attr:`text`."""

    @property
    def text(self) -> str:
        """The allowed values as the summary of ``docs/settings.md`` shows them (Markdown)."""
        ...

    def problem(self, value: object) -> str | None:
        """Why ``value`` is refused, as "must be …" (the end of an E005 message); ``None`` if fine."""
        ...


@dataclass(frozen=True, slots=True)
class Number:
    """An int or float from ``low`` to ``high`` inclusive; ``unit`` says what it counts."""

    low: float
    high: float
    unit: str

    @property
    def text(self) -> str:
        return f"{self.unit}, {_figure(self.low)}\N{EN DASH}{_figure(self.high)}"

    def problem(self, value: object) -> str | None:
        if _is_number(value) and self.low <= value <= self.high:
            return None
        return f"must be a number from {_figure(self.low)} to {_figure(self.high)}"


@dataclass(frozen=True, slots=True)
class OptionalAmount:
    """``None`` (no limit) or a number of ``unit`` above zero (or from zero, ``zero=True``)."""

    unit: str
    integer: bool
    zero: bool

    @property
    def text(self) -> str:
        return f"{self.unit} {'≥' if self.zero else '>'} 0, or `None`"

    def problem(self, value: object) -> str | None:
        if value is None or (
            _is_number(value)
            and (isinstance(value, int) or not self.integer)
            and (value >= 0 if self.zero else value > 0)
        ):
            return None
        return f"must be a number of {self.unit} or None"


@dataclass(frozen=True, slots=True)
class Flag:
    @property
    def text(self) -> str:
        return "bool"

    def problem(self, value: object) -> str | None:
        return None if isinstance(value, bool) else "must be True or False"


@dataclass(frozen=True, slots=True)
class Text:
    """A string (``kind`` names what it holds). ``optional``: ``None`` or a non-empty string, since
    an empty one would read as "set" to the gateway and as "unset" to the person who wrote it."""

    kind: str = "string"
    optional: bool = False

    @property
    def text(self) -> str:
        return f"{self.kind}, or `None`" if self.optional else self.kind

    def problem(self, value: object) -> str | None:
        if not self.optional:
            return None if isinstance(value, str) else "must be a string"
        if value is None or (isinstance(value, str) and value):
            return None
        return "must be a non-empty string or None"


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a few literal values (``None`` among them when the setting may be left unset)."""

    options: tuple[str | None, ...]

    @property
    def text(self) -> str:
        *rest, last = (f"`{literal(option)}`" for option in self.options)
        return f"{', '.join(rest)}, or {last}"

    def problem(self, value: object) -> str | None:
        if value in self.options:
            return None
        *rest, last = (repr(option) for option in self.options)
        return f"must be {', '.join(rest)} or {last}"


@dataclass(frozen=True, slots=True)
class TLSVerify:
    """``requests``' ``verify``: a bool, or the path of a CA bundle; ``None`` defers to the env."""

    @property
    def text(self) -> str:
        return "bool, CA bundle path, or `None`"

    def problem(self, value: object) -> str | None:
        if value is None or isinstance(value, bool) or (isinstance(value, str) and value):
            return None
        return "must be True, False, a CA bundle path or None"


@dataclass(frozen=True, slots=True)
class Networks:
    """A list of networks; each entry is parsed by check E006, which names the bad one."""

    @property
    def text(self) -> str:
        return "list of CIDRs or addresses"

    def problem(self, value: object) -> str | None:
        return None if isinstance(value, list | tuple) else "must be a list of CIDRs"


@dataclass(frozen=True, slots=True)
class HeaderNames:
    @property
    def text(self) -> str:
        return "non-empty list of header names"

    def problem(self, value: object) -> str | None:
        if (
            isinstance(value, list | tuple)
            and value
            and all(isinstance(name, str) and _HEADER_NAME.match(name) for name in value)
        ):
            return None
        return "must be a non-empty list of header names (dashes, not underscores)"
