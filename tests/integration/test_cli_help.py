"""Every command the docs name (``python -m X`` and ``python process.py`` in README.md and
docs/*.md) answers ``--help`` with exit 0, and every option ``process.py --help`` lists is in
docs/running.md. Modules of other projects (``monai.bundle``, pip) are skipped."""

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"python3? (?:-m ([A-Za-z_][\w.]*)|(process\.py))\b")
OPTION = re.compile(r"^\s+(?:-\w, )?(--[a-z][\w-]*)", re.MULTILINE)


def ours(module: str) -> bool:
    """A module of this repository (a package folder or a ``.py`` file under ROOT)."""
    path = ROOT.joinpath(*module.split("."))
    return (path.is_dir() and (path / "__init__.py").is_file()) or path.with_suffix(".py").is_file()


def documented_commands() -> list[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for doc in DOCS:
        for module, script in COMMAND.findall(doc.read_text()):
            if script:
                found.add((script,))
            elif ours(module.rstrip(".")):
                found.add(("-m", module.rstrip(".")))
    return sorted(found)


def run_help(command: tuple[str, ...]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_every_documented_command_answers_help():
    commands = documented_commands()
    assert ("process.py",) in commands and ("-m", "training.train") in commands, commands
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(commands, pool.map(run_help, commands), strict=True))
    failed = {" ".join(c): (d.returncode, d.stderr[-500:]) for c, d in done.items() if d.returncode != 0}
    assert not failed, failed
    empty = [" ".join(c) for c, d in done.items() if "usage:" not in d.stdout]
    assert not empty, f"--help printed no usage: {empty}"


def test_every_process_option_is_in_running_md():
    done = run_help(("process.py",))
    assert done.returncode == 0, done.stderr
    options = set(OPTION.findall(done.stdout)) - {"--help"}
    assert "--input" in options and "--model" in options, options
    running = (ROOT / "docs" / "running.md").read_text()
    missing = sorted(o for o in options if not re.search(re.escape(o) + r"(?![\w-])", running))
    assert not missing, f"process.py options missing from docs/running.md: {missing}"
