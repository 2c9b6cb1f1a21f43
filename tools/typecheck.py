"""mypy over the package as it installs: one import root, built from pyproject's mapping.

The repository keeps producers/, consumers/ and schemas/ at its top level, installed as
`synctec_webhooks.producers` and so on (pyproject.toml, `[tool.setuptools.package-dir]`).
mypy knows nothing of that mapping, so this lays the package out as the wheel does, in a
tree of symlinks under .venv/typecheck/, and runs mypy on it. Messages name the
link-tree path; the part after `synctec_webhooks/` maps back to the repository.

    python tools/typecheck.py [extra mypy arguments]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / ".venv" / "typecheck"


def build_tree() -> Path:
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    shutil.rmtree(TREE, ignore_errors=True)
    package = TREE / "synctec_webhooks"
    package.mkdir(parents=True)
    for entry in (ROOT / mapping["synctec_webhooks"]).iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, folder in mapping.items():
        if name != "synctec_webhooks":
            (package / name.split(".", 1)[1]).symlink_to(ROOT / folder)
    return TREE


def main(argv: list[str]) -> int:
    tree = build_tree()
    config = ROOT / "pyproject.toml"
    command = [sys.executable, "-m", "mypy", "--config-file", str(config), "-p", "synctec_webhooks"]
    return subprocess.call([*command, *argv], cwd=tree)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
