"""``--baseline REV``: another commit's django_gateway measured next to the working tree's, same run.

Two runs on a shared machine differ by more than a commit does (over one day the development VM
put the gateway at 1.59-1.96x django-revproxy), so a check within ±5% needs both versions in one
run, under the same load, interleaved. This module provides the other version:

* :func:`export` unpacks ``git archive REV django_gateway`` into the run's temporary directory:
  the package alone, read from the local repository, no network, no work tree touched. The
  benchmark project (settings, URLs, seed) stays the working tree's, so both servers run the same
  settings and the same seed, and REV must understand them.
* :class:`Checkout` is a copy of the package a server runs. gunicorn (``--chdir``) and
  ``python -m`` put their directory first on ``sys.path``, so the baseline's processes run *in*
  the export, and the working tree (for ``benchmarks``) comes after it on ``PYTHONPATH``.
  :func:`check_import` proves the export is what they import: an editable install or a stray
  path would otherwise measure the working tree twice and report a perfect match.
* The baseline shares the working tree's seeded SQLite database when the two packages ship the
  same migrations, hence the same schema; otherwise it gets its own, built by its own migrations
  and seeded by the same script. Its cache keys get their own prefix and its rate-limit counters
  their own Redis database either way, since the two versions' cache entries and counters need
  not agree.
* :func:`with_twins` repeats every row served by the gateway's gunicorn on the baseline's, right
  after the original; :func:`round_order` swaps each pair in even rounds so neither version is
  always measured first.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

from .targets import GATEWAY, Target

PACKAGE = "django_gateway"
KEY_SUFFIX = "@baseline"
#: The private rate-limit Redis database the baseline counts in (the working tree's uses 0).
REDIS_DB = 1


@dataclass(frozen=True)
class Baseline:
    requested: str  # REV as given on the command line
    commit: str  # its full id
    short: str  # its abbreviated id, as labels show it


@dataclass(frozen=True)
class Checkout:
    """A copy of django_gateway that servers run: ``root`` holds it and comes first on sys.path."""

    root: Path
    env: dict[str, str]
    redis_db: int = 0  # database of the private rate-limit Redis its counters go to


def _git(repo: Path, *arguments: str) -> str:
    """Standard output of a read-only git command, stripped; empty when git fails."""
    done = subprocess.run(
        ["git", "-C", str(repo), *arguments], capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def resolve(requested: str, repo: Path) -> Baseline:
    """Fail before anything starts when REV names no commit."""
    commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{requested}^{{commit}}")
    if not commit:
        raise RuntimeError(f"--baseline {requested!r} names no commit of {repo}")
    return Baseline(requested, commit, _git(repo, "rev-parse", "--short", commit))


def current_revision(repo: Path) -> str:
    """What the working tree's rows run, for the verdict: HEAD, and whether the package differs."""
    head = f"HEAD {_git(repo, 'rev-parse', '--short', 'HEAD')}"
    changed = _git(repo, "status", "--porcelain", "--", PACKAGE)
    return f"{head} + uncommitted changes" if changed else head


def export(baseline: Baseline, repo: Path, workdir: Path) -> Path:
    """Unpack the commit's package into a fresh directory under ``workdir``; return that directory."""
    done = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", baseline.commit, PACKAGE],
        capture_output=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"git archive {baseline.short} {PACKAGE} failed: {done.stderr.decode().strip()}"
        )
    root = workdir / f"baseline-{baseline.short}"
    root.mkdir()
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(root, filter="data")
    return root


def same_migrations(root: Path, repo: Path) -> bool:
    """Whether the export ships exactly the working tree's migrations (so one database fits both)."""

    def migrations(base: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in (base / PACKAGE / "migrations").glob("*.py")}

    return migrations(root) == migrations(repo)


def checkout(root: Path, env: dict[str, str], workdir: Path, *, own_database: bool) -> Checkout:
    """The baseline's environment: the working tree's ``env`` with the export first on the path."""
    database = {
        "BENCH_DB_PATH": str(workdir / "baseline.sqlite3"),
        "BENCH_CREDENTIALS_PATH": str(workdir / "baseline-credentials.json"),
    }
    return Checkout(
        root,
        {
            **env,
            "PYTHONPATH": f"{root}{os.pathsep}{env['PYTHONPATH']}",
            "BENCH_CACHE_PREFIX": f"{env['BENCH_CACHE_PREFIX']}-baseline",
            **(database if own_database else {}),
        },
        REDIS_DB,
    )


def check_import(tree: Checkout, python: str) -> None:
    """Raise unless a process started like the baseline's servers imports the exported package."""
    done = subprocess.run(
        [python, "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"],
        env=tree.env,
        cwd=tree.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    imported = Path(done.stdout.strip()).resolve()
    if done.returncode != 0 or not imported.is_relative_to(tree.root.resolve()):
        raise RuntimeError(
            f"the baseline's processes import {PACKAGE} from {imported}, not from {tree.root}: "
            f"{done.stderr.strip()}"
        )


def with_twins(targets: tuple[Target, ...], baseline: Baseline) -> tuple[Target, ...]:
    """``targets`` with every row of the gateway's gunicorn followed by its twin on the baseline's."""
    rows: list[Target] = []
    for target in targets:
        rows.append(target)
        if GATEWAY in (target.key, target.server):
            rows.append(
                replace(
                    target,
                    key=target.key + KEY_SUFFIX,
                    label=target.label.replace(
                        "django-gateway", f"django-gateway @{baseline.short}", 1
                    ),
                    server=target.server and target.server + KEY_SUFFIX,
                    baseline_of=target.key,
                )
            )
    return tuple(rows)


def round_order(targets: tuple[Target, ...], round_number: int) -> list[Target]:
    """The targets in table order, except that even rounds measure each twin before its original."""
    order: list[Target] = []
    for target in targets:
        if target.baseline_of and round_number % 2 == 0:
            order.insert(len(order) - 1, target)
        else:
            order.append(target)
    return order
