"""The runtime package imports with ``requirements.txt`` alone, and its docstring names every module.

The image installs only ``requirements.txt`` (the container tier imports every module inside
the built image too); these checks catch a tool's import creeping into ``hanseg`` without Docker.
"""

from __future__ import annotations

import ast
import pkgutil
import re
import subprocess
import sys

import hanseg
from helpers import ROOT

#: Tool packages and tool-only distributions that the image does not install.
NOT_IN_IMAGE = (
    "training",
    "phantoms",
    "evaluation",
    "benchmarks",
    "matplotlib",
    "grand_challenge_metrics",
    "tqdm",
    "pytest",
    "hypothesis",
    "itk",
    "nibabel",
)


def runtime_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(hanseg.__path__, "hanseg."))


def requirement_names() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[<>=!~\[ ;]", line)[0].lower())
    return names


def top_level_imports(path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_runtime_import_is_stdlib_hanseg_or_in_requirements_txt():
    # import names that differ from their distribution's name
    aliases = {"PIL": "pillow", "prometheus_client": "prometheus-client"}
    allowed = requirement_names() | set(sys.stdlib_module_names) | {"hanseg", "__future__"}
    allowed |= {alias.lower() for alias, dist in aliases.items() if dist in allowed}
    files = [ROOT / "process.py", *sorted((ROOT / "hanseg").rglob("*.py"))]
    assert len(files) > 10
    bad = {str(f.relative_to(ROOT)): sorted(i for i in top_level_imports(f) if i.lower() not in allowed) for f in files}
    assert {f: names for f, names in bad.items() if names} == {}


def test_every_runtime_module_imports_without_the_tools():
    """Each module imported in a fresh interpreter in which the tool packages cannot be found."""
    blocker = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        f"    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {NOT_IN_IMAGE!r}: raise ImportError('not in the image: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import importlib\n"
        f"for m in {runtime_modules()!r}: importlib.import_module(m)\n"
        "print('imported', len(sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", blocker], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("imported")


def test_the_package_docstring_names_every_module():
    doc = hanseg.__doc__ or ""
    missing = [m for m in runtime_modules() if f"``{m.rsplit('.', 1)[-1]}``" not in doc]
    assert missing == []
