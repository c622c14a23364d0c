# Types for the part of google-re2 the gateway uses (route_regex.py); the package ships none.
# Written from re2/__init__.py of google-re2 1.1: a Python wrapper over a pybind11 module.
# Keep it to what django_gateway calls; the rest of the module stays untyped (__getattr__).

from typing import AnyStr, Generic

from _typeshed import Incomplete

# pybind11's translation of RE2's C++ errors; the wrapper re-exports it under this name.
class error(Exception): ...

class Options:
    log_errors: bool

class _Match(Generic[AnyStr]):
    def end(self, group: int | str = 0) -> int: ...

class _Regexp(Generic[AnyStr]):
    def match(
        self, text: AnyStr, pos: int | None = None, endpos: int | None = None
    ) -> _Match[AnyStr] | None: ...

def compile(pattern: AnyStr, options: Options | None = None) -> _Regexp[AnyStr]: ...

class Set:
    @classmethod
    def MatchSet(cls, options: Options | None = None) -> Set: ...
    def Add(self, pattern: str | bytes) -> int: ...
    def Compile(self) -> None: ...
    # The indexes (in the order they were added) of the patterns that match; None for none.
    def Match(self, text: str | bytes) -> list[int] | None: ...

def __getattr__(name: str) -> Incomplete: ...
