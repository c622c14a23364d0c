"""The quickstart, replayed against a real demo: every command its console blocks show is run,
and what it printed is compared with what the page says it prints.

The page drifted from the product before (a header the gateway no longer sends, a route missing
from a listing, a rate limit never shown); this test makes that a failure. The demo is started
with ``make demo``'s own recipe on free ports and a temporary database, curl commands are sent by
:mod:`tests.docs_console` (real requests over real sockets) and ``manage.py`` commands run in a
subprocess against the demo's database. Only what legitimately varies is normalised: the demo's
ports are mapped to the defaults the page shows (8000, 8101, 8102) and its key to the page's
sample key; dates, request ids, timings, process ids, version numbers and the lengths of bodies
that contain them are masked on both sides.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.docs_console import ConsoleCommand, console_commands, run_pipeline, words
from tests.example_demo import API_KEY, ROOT, RunningDemo, demo_env, free_ports, running_demo

PAGE = ROOT / "docs" / "quickstart.md"
#: ``make demo``'s defaults, which the page shows.
PAGE_PORT, PAGE_UPSTREAM_PORTS = 8000, (8101, 8102)
#: A configuration change is live within CONFIG_POLL_INTERVAL (1 s in the example project); a
#: reader takes longer than that to type the next command, so the test waits as long.
AFTER_A_CHANGE = 1.2
#: Text that differs from run to run, and what it reads as on both sides of the comparison.
VARYING = [
    (re.compile(r"^Date: .*$", re.M), "Date: <date>"),
    (re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]", re.M), "[<time>]"),
    (re.compile(r"(CPython|curl)/[\d.]+"), r"\1/<version>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<request-id>"),
    (re.compile(r"\b\d+(\.\d+)?ms\b"), "<ms>"),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
    # Lengths of bodies that hold ports and ids, and seconds left in a rate-limit window.
    (
        re.compile(r"^(Content-Length|RateLimit-Reset|Retry-After): \d+$", re.M | re.I),
        r"\1: <n>",
    ),
]


def normalise(text: str) -> str:
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n"))
    for pattern, replacement in VARYING:
        text = pattern.sub(replacement, text)
    return text.strip("\n")


class Transcript:
    """Runs the page's commands against one demo: the page's ports and sample key are swapped for
    the demo's in each command, and back in what it printed."""

    def __init__(self, demo: RunningDemo, sample_key: str | None) -> None:
        self.demo = demo
        self.variables: dict[str, str] = {}
        pairs = [
            (PAGE_PORT, demo.port),
            *zip(PAGE_UPSTREAM_PORTS, demo.upstream_ports, strict=True),
        ]
        self.ports = [(str(page), str(real)) for page, real in pairs]
        self.keys: list[tuple[str, str]] = []
        if sample_key:  # the key, and its prefix as X-Credential-Identifier shows it
            self.keys = [
                (sample_key, demo.api_key),
                (key_prefix(sample_key), key_prefix(demo.api_key)),
            ]

    def run(self, command: str) -> str:
        if command == "make demo":  # the demo this transcript runs against, already started
            return self.to_page(self.demo.stdout)
        for page, real in self.ports:
            command = re.sub(rf"(?<=:){page}(?!\d)", real, command)
        command = API_KEY.sub(self.demo.api_key, command)
        argv = words(command, self.variables)
        output = run_pipeline(argv, self.variables, self._run_program)
        if "shell" in argv:
            time.sleep(AFTER_A_CHANGE)
        return self.to_page(output.decode())

    def to_page(self, output: str) -> str:
        for page, real in self.ports:
            output = re.sub(rf"(?<!\d){real}(?!\d)", page, output)
        for page, real in self.keys:
            output = output.replace(real, page)
        return output

    def _run_program(self, argv: list[str]) -> bytes:
        assert argv[:2] == [".venv/bin/python", "example_project/manage.py"], (
            f"the test runs curl and manage.py commands only, not {argv}"
        )
        result = subprocess.run(
            [sys.executable, *argv[1:]],
            cwd=ROOT,
            env=demo_env(self.demo.db_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
        return result.stdout


def key_prefix(key: str) -> str:
    match = API_KEY.fullmatch(key)
    assert match, f"not an API key: {key}"
    return match[1]


def mismatch(step: ConsoleCommand, transcript: Transcript) -> str | None:
    """What is wrong with the page's output for ``step``, or ``None``."""
    try:
        actual = normalise(transcript.run(step.command))
    except Exception as exc:  # report every step, not only the first one that breaks
        return f"line {step.line}: $ {step.command}\ncould not be run: {exc!r}"
    expected = normalise(step.output)
    if step.command == "make demo":  # a server's output goes on: the page shows a stretch of it
        if expected in actual:
            return None
        return f"line {step.line}: `make demo` never printed:\n{expected}"
    if expected == actual:
        return None
    diff = difflib.unified_diff(
        expected.splitlines(), actual.splitlines(), "the page", "the demo", lineterm=""
    )
    return f"line {step.line}: $ {step.command}\n" + "\n".join(diff)


def access_log_lines(markdown: str) -> list[str]:
    """The access-log lines the page says the demo's terminal shows (```text blocks)."""
    blocks = re.findall(r"^```text\n(.*?)^```", markdown, re.M | re.S)
    return [
        line for block in blocks for line in block.splitlines() if "django_gateway.access" in line
    ]


def test_the_quickstart_shows_what_the_demo_does(tmp_path: Path) -> None:
    page = PAGE.read_text()
    steps = console_commands(page)
    assert steps and steps[0].command == "make demo", "the quickstart starts with `make demo`"
    sample = API_KEY.search("\n".join(step.command for step in steps))
    gateway, upstream_a, upstream_b = free_ports(3)

    with running_demo(tmp_path, gateway, (upstream_a, upstream_b)) as demo:
        transcript = Transcript(demo, sample[0] if sample else None)
        problems = [mismatch(step, transcript) for step in steps]
        logged = set(normalise(transcript.to_page(demo.stderr)).splitlines())
        for line in access_log_lines(page):
            if normalise(line) not in logged:
                problems.append(f"the demo's terminal never showed this access-log line:\n{line}")

    found = [problem for problem in problems if problem]
    assert not found, f"{len(found)} outputs in {PAGE.name} differ:\n\n" + "\n\n".join(found)
