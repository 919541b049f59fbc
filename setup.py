"""Build step: fill numba's cache of the indicator kernels while the package is built.

Project metadata lives in pyproject.toml; this only extends ``build_py`` so that ``pip install .``
and ``pip install -e .`` compile the kernels once, on the installing machine, into
``kernels/__pycache__`` (of the built tree, or of the source tree for an editable install),
and the synthetic market's split into ``pipeline/providers/__pycache__``.
Without it the first run compiles for 25-50 s; see ``kernels/_cache.py`` for why a build-time
cache was chosen. It also compiles ahead of time, into extension modules that load without
numba, the kernels' entry points for small calls (``kernels/aot.py``) and the synthetic
market's split (``pipeline/providers/synthetic_split_aot.py``). A failure here never fails
the build: the first run then compiles as before, and numba's kernels and split are used.
An editable install also writes the bytecode of the source tree's modules.
"""

import compileall
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# imports the package through a symlink named ``marketlake`` (the source tree's folder has
# another name), so the caches land in the real ``__pycache__`` folders
_PRECOMPILE = """
import sys
sys.path.insert(0, sys.argv[1])
from marketlake.kernels._cache import precompile
from marketlake.pipeline.providers import synthetic_split
precompile()
synthetic_split.precompile()
"""
_BUILD_KERNELS = """
import sys
sys.path.insert(0, sys.argv[1])
from marketlake.kernels import aot
print("built", ", ".join(path.name for path in aot.build_all()))
"""
_BUILD_SPLIT = """
import sys
sys.path.insert(0, sys.argv[1])
from marketlake.pipeline.providers import synthetic_split_aot
print("built", synthetic_split_aot.build().name)
"""


def _run(code: str, tmp: str, failed: str) -> None:
    try:
        ok = subprocess.run([sys.executable, "-c", code, tmp], timeout=900).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    if not ok:
        print(f"warning: {failed}")


class BuildPyWithKernels(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            root = Path(self.get_package_dir("marketlake") or ".").resolve()
        else:
            root = Path(self.build_lib, "marketlake").resolve()
        if not (root / "kernels" / "_cache.py").is_file():
            return
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "marketlake").symlink_to(root, target_is_directory=True)
            print("compiling the indicator kernels into numba's cache (about a minute)")
            _run(_PRECOMPILE, tmp, "kernels not precompiled; the first run will compile them")
            print("compiling the kernels for small calls ahead of time (per CPU level)")
            _run(_BUILD_KERNELS, tmp, "kernels not built ahead of time; numba's will be used")
            print("compiling the synthetic market's split ahead of time")
            _run(_BUILD_SPLIT, tmp, "split not built ahead of time; numba's will be used")
        if getattr(self, "editable_mode", False):
            self._byte_compile_sources()

    def _byte_compile_sources(self):
        """Write the bytecode of the source tree's modules, as pip does for an installed
        package: Python reads it whenever it is newer than the source, but writes none when
        PYTHONDONTWRITEBYTECODE is set (common in containers, and on the machines this was
        measured on), and every process then compiles every module it imports from source
        (about 0.3 s of CPU of a files import's main thread)."""
        for package in self.packages:
            folder = Path(self.get_package_dir(package))
            if folder.is_dir():
                compileall.compile_dir(folder, maxlevels=0, quiet=1)


setup(cmdclass={"build_py": BuildPyWithKernels})
