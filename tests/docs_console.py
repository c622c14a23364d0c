"""Read the ``console`` blocks of a docs page, and run the curl commands they show.

A page's ```` ```console ```` block is a terminal transcript: a line starting with ``$ `` is a
command (continued on the next lines while a quote is open or the line ends with ``\\``), and the
lines up to the next command are what it printed. :func:`console_commands` returns them in page
order, so a test can run each command and compare.

:func:`run_pipeline` runs the small shell subset the pages use: ``NAME=value``, ``$NAME``,
``head -c N /dev/zero | ...``, ``... | head -n N`` and ``head -c N``; anything else raises, naming
what it cannot run, so a page cannot drift into commands its test skips. ``curl`` is emulated
with :mod:`http.client`, because the test must not depend on a curl binary: the request goes out
with the headers curl sends, in curl's order, and the output is what curl prints for the options
the pages use (``-i``, ``-s``, ``-H``, ``-X``, ``-o /dev/null``, ``-w`` with ``%{http_code}`` and
``%header{NAME}``, ``--data-binary``, and ``[1-9]`` ranges in the URL). Any other option raises.
Other commands go to a ``runner`` the test provides.
"""

from __future__ import annotations

import http.client
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: The curl whose requests the emulation copies (its ``User-Agent``).
CURL_VERSION = "7.88.1"
FENCE = re.compile(r"^```console\n(.*?)^```", re.M | re.S)
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
URL_RANGE = re.compile(r"\[(\d+)-(\d+)\]")
WRITE_OUT = re.compile(r"%\{http_code\}|%header\{([\w-]+)\}|\\n|%")

Runner = Callable[[list[str]], bytes]


@dataclass
class ConsoleCommand:
    command: str
    output: str
    line: int  #: where the command starts in the page, for error messages


def console_commands(markdown: str) -> list[ConsoleCommand]:
    """Every command of every ``console`` block, with the output shown under it."""
    commands: list[ConsoleCommand] = []
    for block in FENCE.finditer(markdown):
        first_line = markdown.count("\n", 0, block.start(1)) + 1
        lines = block[1].splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            assert line.startswith("$ "), f"line {first_line + i}: output before any command"
            start, command = i, line[2:]
            while _continues(command):
                i += 1
                command += "\n" + lines[i]
            i += 1
            output = []
            while i < len(lines) and not lines[i].startswith("$ "):
                output.append(lines[i])
                i += 1
            commands.append(ConsoleCommand(command, "\n".join(output), first_line + start))
    return commands


def _continues(command: str) -> bool:
    if command.endswith("\\"):
        return True
    try:
        shlex.split(command, comments=True)
    except ValueError:  # a quote is still open
        return True
    return False


def words(command: str, variables: dict[str, str]) -> list[str]:
    """The command's words after ``$NAME`` expansion, comments and ``\\``-newlines removed."""

    def expand(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        assert name in variables, f"the page uses ${name} before setting it"
        return variables[name]

    lexer = shlex.shlex(
        VARIABLE.sub(expand, command.replace("\\\n", "")), posix=True, punctuation_chars="|"
    )
    lexer.whitespace_split = True
    return list(lexer)


def run_pipeline(argv: list[str], variables: dict[str, str], runner: Runner) -> bytes:
    """Run one command line (already split by :func:`words`); returns what it printed.

    ``NAME=value`` sets ``variables[NAME]`` for the commands after it, as a shell would.
    """
    if len(argv) == 1 and re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0]):
        name, _, value = argv[0].partition("=")
        variables[name] = value
        return b""
    stages = _split(argv, "|")
    data = b""
    if stages[0][:2] == ["head", "-c"] and stages[0][3:] == ["/dev/zero"]:
        data = b"\0" * int(stages[0][2])
        stages = stages[1:]
    for stage in stages:
        if stage[0] == "curl":
            data = curl(stage[1:], stdin=data)
        elif stage[0] == "head" and len(stage) == 3 and stage[1] in ("-n", "-c"):
            data = _head(data, stage[1], int(stage[2]))
        elif stage is stages[0] and not data:
            data = runner(stage)
        else:
            raise AssertionError(f"the test cannot run {shlex.join(stage)!r} in a pipeline")
    return data


def _head(data: bytes, unit: str, count: int) -> bytes:
    """``head -n COUNT`` (lines) or ``head -c COUNT`` (bytes)."""
    if unit == "-n":
        return b"".join(data.splitlines(keepends=True)[:count])
    return data[:count]


def _split(argv: list[str], separator: str) -> list[list[str]]:
    stages: list[list[str]] = [[]]
    for word in argv:
        if word == separator:
            stages.append([])
        else:
            stages[-1].append(word)
    assert all(stages), f"empty command in {argv}"
    return stages


@dataclass
class CurlCall:
    urls: list[str] = field(default_factory=list)
    method: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    data: bytes | None = None
    include: bool = False
    discard: bool = False
    write_out: str = ""


FLAGS = {"-i": "include", "--include": "include", "-s": None, "--silent": None}
OPTIONS = {"-H", "--header", "-X", "--request", "-o", "--output", "-w", "--write-out"}


def parse_curl(args: list[str], stdin: bytes) -> CurlCall:
    call = CurlCall()
    queue = list(args)
    while queue:
        arg = queue.pop(0)
        if re.fullmatch(r"-[a-zA-Z]{2,}", arg):  # -si
            queue[:0] = [f"-{flag}" for flag in arg[1:]]
        elif arg in FLAGS:
            if FLAGS[arg]:
                setattr(call, FLAGS[arg], True)
        elif arg in OPTIONS or arg == "--data-binary":
            assert queue, f"curl {arg} needs a value"
            _apply(call, arg, queue.pop(0), stdin)
        elif arg.startswith("-"):
            raise AssertionError(f"the curl emulation does not know {arg}; teach it or drop it")
        else:
            call.urls.extend(_expand_range(arg))
    assert call.urls, f"curl without a URL: {args}"
    return call


def _apply(call: CurlCall, option: str, value: str, stdin: bytes) -> None:
    if option in ("-H", "--header"):
        name, _, header_value = value.partition(":")
        call.headers.append((name.strip(), header_value.strip()))
    elif option in ("-X", "--request"):
        call.method = value
    elif option in ("-o", "--output"):
        assert value == "/dev/null", f"curl -o {value}: only /dev/null is emulated"
        call.discard = True
    elif option in ("-w", "--write-out"):
        call.write_out = value
    else:  # --data-binary
        call.data = stdin if value == "@-" else value.encode()


def _expand_range(url: str) -> list[str]:
    match = URL_RANGE.search(url)
    if match is None:
        return [url]
    first, last = int(match[1]), int(match[2])
    return [url[: match.start()] + str(n) + url[match.end() :] for n in range(first, last + 1)]


def curl(args: list[str], stdin: bytes = b"") -> bytes:
    """What ``curl ARGS`` prints, one transfer after the other (``-s``: no progress meter)."""
    call = parse_curl(args, stdin)
    return b"".join(_transfer(call, url) for url in call.urls)


def _transfer(call: CurlCall, url: str) -> bytes:
    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.hostname, f"curl emulation: only http URLs ({url})"
    own = {name.lower(): (name, value) for name, value in call.headers}
    defaults = [
        ("Host", parts.netloc),
        ("User-Agent", f"curl/{CURL_VERSION}"),
        ("Accept", "*/*"),
    ]
    headers = [own.pop(name.lower(), (name, value)) for name, value in defaults]
    headers += [(name, value) for name, value in call.headers if name.lower() in own]
    if call.data is not None:
        headers.append(("Content-Length", str(len(call.data))))
        if "content-type" not in own:
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
    method = call.method or ("POST" if call.data is not None else "GET")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders(call.data)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()

    received = response.getheaders()
    head = f"HTTP/{response.version / 10:.1f} {response.status} {response.reason}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in received) + "\r\n"
    shown = b"" if call.discard else (head.encode("latin-1") if call.include else b"") + body
    return shown + _write_out(call.write_out, response.status, received).encode()


def _write_out(template: str, status: int, headers: list[tuple[str, str]]) -> str:
    def variable(match: re.Match[str]) -> str:
        if match[0] == "%{http_code}":
            return f"{status:03d}"
        if match[0] == "\\n":
            return "\n"
        assert match[1], (
            f"curl -w: only %{{http_code}} and %header{{NAME}} are emulated: {template}"
        )
        values = [value for name, value in headers if name.lower() == match[1].lower()]
        return ", ".join(values)

    return WRITE_OUT.sub(variable, template)
