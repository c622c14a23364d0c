"""``docs/settings.md`` says what ``django_gateway/settings_table.py`` declares.

The summary shows, for every setting in the table's order, its default, its allowed values (the
rule's own description, so the docs cannot promise what E005 does not check) and its doc line;
every setting has a section that opens with the same default. A failure lists each disagreement
with the summary row to paste.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from django_gateway.setting_rules import Number, literal
from django_gateway.settings_table import SETTINGS, Setting

DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
KEY_CELL = re.compile(r"^\[`(?P<name>\w+)`\]\(#\w+\)$")


def summary_row(setting: Setting) -> str:
    cells = (
        f"[`{setting.name}`](#{setting.name.lower()})",
        f"`{literal(setting.default)}`",
        setting.rule.text,
        setting.doc,
    )
    return f"| {' | '.join(cells)} |"


def summary(markdown: str) -> dict[str, str]:
    """Setting name to its row, in the order of the table under ``## Summary``."""
    section = markdown.split("\n## Summary\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| [")]
    found = {}
    for row in rows:
        key = KEY_CELL.match(row.split(" | ", 1)[0].removeprefix("| "))
        found[key["name"] if key else row] = row
    return found


def section_opening(markdown: str, name: str) -> str | None:
    """The first line of the section of ``name``, or ``None`` if it has none."""
    match = re.search(rf"^### `{name}`\n\n(.*)$", markdown, re.MULTILINE)
    return match[1] if match else None


def disagreements(markdown: str) -> list[str]:
    rows = summary(markdown)
    problems = []
    for setting in SETTINGS:
        expected = summary_row(setting)
        if setting.name not in rows:
            problems.append(f"{setting.name}: not in the summary; add\n{expected}")
        elif rows[setting.name] != expected:
            problems.append(
                f"{setting.name}: the summary says\n{rows[setting.name]}\nnot\n{expected}"
            )
        opening = section_opening(markdown, setting.name)
        default = f"Default `{literal(setting.default)}`"
        if opening is None:
            problems.append(f"{setting.name}: no '### `{setting.name}`' section")
        elif not opening.startswith(default):
            problems.append(
                f"{setting.name}: its section should open with {default}, not: {opening}"
            )
    declared = [setting.name for setting in SETTINGS]
    problems.extend(
        f"{name}: in the summary but not a setting" for name in rows if name not in declared
    )
    if not problems and list(rows) != declared:
        problems.append("the summary is not in the order of SETTINGS")
    return problems


def test_the_settings_page_agrees_with_the_settings_table():
    problems = disagreements(DOC.read_text(encoding="utf-8"))
    assert not problems, "docs/settings.md disagrees with settings_table.py:\n\n" + "\n\n".join(
        problems
    )


def setting(name: str) -> Setting:
    return next(setting for setting in SETTINGS if setting.name == name)


def swap_row(name: str, **changes: Any) -> Callable[[str], str]:
    """An edit of the page: the summary row of ``name`` as if declared with ``changes``."""
    row = summary_row(setting(name))
    return lambda doc: doc.replace(row, summary_row(replace(setting(name), **changes)))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda doc: doc.replace(summary_row(setting("JWKS_TIMEOUT")) + "\n", ""),
            "JWKS_TIMEOUT: not in the summary",
        ),
        (
            lambda doc: doc.replace(
                summary_row(setting("VIA")),
                summary_row(setting("VIA")) + "\n| [`VIAA`](#viaa) | `1` | bool | A typo. |",
            ),
            "VIAA: in the summary but not a setting",
        ),
        (swap_row("CONFIG_POLL_INTERVAL", default=2.0), "CONFIG_POLL_INTERVAL: the summary says"),
        (
            swap_row("CONFIG_POLL_INTERVAL", rule=Number(0, 3600, "seconds")),
            "CONFIG_POLL_INTERVAL: the summary says",
        ),
        (swap_row("JWT_COOKIE", doc="A cookie."), "JWT_COOKIE: the summary says"),
        (
            lambda doc: doc.replace("### `CONSUL_KEY`\n", "### `CONSUL_PRIVATE_KEY`\n"),
            "CONSUL_KEY: no '### `CONSUL_KEY`' section",
        ),
        (
            lambda doc: doc.replace("Default `55.0`.", "Default `60.0`."),
            "CONSUL_WAIT: its section should open with Default `55.0`, not: Default `60.0`.",
        ),
    ],
    ids=["missing", "extra", "default", "range", "doc-line", "no-section", "section-default"],
)
def test_each_kind_of_drift_is_reported(edit, expected):
    doc = DOC.read_text(encoding="utf-8")
    edited = edit(doc)
    assert edited != doc, "the edit no longer applies to docs/settings.md"
    assert [problem for problem in disagreements(edited) if problem.startswith(expected)]
