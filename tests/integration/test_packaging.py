"""The package as a user installs it: one top-level name, everything it needs inside.

Builds the wheel from this checkout (no network: the virtualenv's setuptools), installs
it into a scratch folder and imports it from elsewhere, so nothing can be found through
the source tree by accident, as it was when the broker's assets lived in deploy/.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # A copy, so a stale build/ of the checkout cannot add or hide a file.
    source = tmp_path_factory.mktemp("source") / "src"
    skip = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "tests", "docs")
    shutil.copytree(ROOT, source, ignore=skip)
    wheel_cmd = ["wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out)]
    subprocess.run([*PIP, *wheel_cmd, str(source)], check=True, cwd=out)
    (found,) = out.glob("synctec_webhooks-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [*PIP, "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    return target


def test_the_wheel_has_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top == {"synctec_webhooks"}
    info = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(info).decode().split() == ["synctec_webhooks"]


def test_the_installed_distribution_declares_only_synctec_webhooks(installed: Path) -> None:
    entries = {p.name for p in installed.iterdir()} - {"bin"}
    assert {e for e in entries if not e.endswith(".dist-info")} == {"synctec_webhooks"}


def test_installed_package_finds_its_data_without_the_source_tree(
    installed: Path, tmp_path: Path
) -> None:
    check = """
import synctec_webhooks, synctec_webhooks.schemas as schemas
from synctec_webhooks.localkafka.files import LOG4J2_FILE, POM_FILE, PROPERTIES_TEMPLATE
from importlib import resources
assert synctec_webhooks.__file__.startswith(SITE), synctec_webhooks.__file__
assert POM_FILE.is_file() and PROPERTIES_TEMPLATE.is_file() and LOG4J2_FILE.is_file()
assert POM_FILE.is_relative_to(SITE), POM_FILE
assert schemas.EVENT_TYPES and (resources.files(schemas) / "history").is_dir()
assert (resources.files("synctec_webhooks.admin") / "static" / "index.html").is_file()
assert (resources.files("synctec_webhooks") / "py.typed").is_file()
print(synctec_webhooks.__version__, synctec_webhooks.EventProducer.__module__)
"""
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; SITE={str(installed)!r}; sys.path.insert(0, SITE)\n{check}",
        ],
        cwd=tmp_path,  # not the checkout: nothing found through the source tree
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    version, module = result.stdout.split()
    assert module == "synctec_webhooks.producers.events"
    assert version.count(".") == 2
