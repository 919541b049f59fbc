"""The installed package lives under one namespace: nothing named kernels, lake, pipeline, sql or
cli lands at the top level of site-packages, where it would collide with PyPI packages of those
names (``kernels`` is the Hugging Face kernel hub that transformers imports when present)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PROBE = """
import importlib.util, json
tops = {n: importlib.util.find_spec(n) is not None for n in
        ("kernels", "lake", "pipeline", "sql", "cli", "errors")}
import marketlake.cli, marketlake.kernels, marketlake.lake, marketlake.pipeline, marketlake.sql
print(json.dumps({"tops": tops, "kernels": marketlake.kernels.__name__}))
"""


def test_no_top_level_modules_installed(tmp_path: Path) -> None:
    # a foreign working directory, so only what is installed can be imported
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["tops"] == dict.fromkeys(
        ("kernels", "lake", "pipeline", "sql", "cli", "errors"), False
    )
    assert data["kernels"] == "marketlake.kernels"


def test_console_script_points_into_the_namespace() -> None:
    (script,) = [
        e for e in metadata.entry_points(group="console_scripts") if e.name == "marketlake"
    ]
    assert script.value == "marketlake.cli:app"


def test_importing_kernels_writes_nothing(tmp_path: Path) -> None:
    import marketlake.kernels as k

    cache = Path(k.__file__).parent / "__pycache__"
    before = {p.name: p.stat().st_mtime_ns for p in cache.glob("*")} if cache.is_dir() else {}
    proc = subprocess.run(
        [sys.executable, "-c", "import marketlake.kernels"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    after = {p.name: p.stat().st_mtime_ns for p in cache.glob("*")} if cache.is_dir() else {}
    assert after == before


def test_every_source_package_is_installed() -> None:
    """A folder with an ``__init__.py`` that pyproject does not list would be missing from a
    non-editable install (``pip install .``) while every editable checkout still works."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    tool = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    dirs = tool["package-dir"]
    found = {"marketlake"}
    for init in root.glob("*/**/__init__.py"):
        rel = init.parent.relative_to(root)
        if rel.parts[0] in ("tests", "bench", "build", "docs") or rel.parts[0].startswith("."):
            continue
        found.add("marketlake." + ".".join(rel.parts))
    assert found == listed
    assert all(
        dirs[p] == p.removeprefix("marketlake.").replace(".", "/") for p in listed - {"marketlake"}
    )
