"""The package's layers point down only, checked on the source of every module.

    cli                      the console entry point, wiring of the roles
    admin | consumers | producers        the three users of the core, apart
    core (everything else)   config, kafka, serialization, signing, dead letters, ...
    localkafka               a developer tool: only cli may import it

Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_MAPPING: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
    "setuptools"
]["package-dir"]

USERS = ("admin", "consumers", "producers")
TOP = ("cli",)
DEV = ("localkafka",)
# Pure logic: no network client, no event loop.
PURE = (
    "accounts",
    "attempts.endpoint_health",
    "audit",
    "attempts.records",
    "consumers.delivery.handler",
    "consumers.fanout.handler",
    "deadletters.records",
    "deliveries",
    "errors",
    "events",
    "limits",
    "matching",
    "offsets",
    "portal_links",
    "recent",
    "retry_policy",
    "signing",
    "topics",
)
IO_LIBRARIES = ("confluent_kafka", "aiohttp", "asyncio", "socket")


def _modules() -> Iterator[tuple[str, Path]]:
    """(module name without the root, path) of every module the package installs."""
    for package, folder in _MAPPING.items():
        base = ROOT / folder
        prefix = package.removeprefix("synctec_webhooks").lstrip(".")
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if package == "synctec_webhooks" and parts and parts[0] in _MAPPED_SUBPACKAGES:
                continue  # not there: mapped from the repository's top level
            yield ".".join(([prefix] if prefix else []) + parts), path


_MAPPED_SUBPACKAGES = {p.split(".", 1)[1] for p in _MAPPING if "." in p}
MODULES = dict(_modules())


def _imports(path: Path) -> set[str]:
    """Every module the file imports (package-relative for ours, top name for others)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "synctec_webhooks" or name.startswith("synctec_webhooks."):
                found.add(name.removeprefix("synctec_webhooks").lstrip("."))
            else:
                found.add(name.split(".")[0])
    return found


def _layer(module: str) -> str:
    if module == "":
        return "root"  # synctec_webhooks/__init__.py: the public names, loaded lazily
    head = module.split(".")[0]
    if head in TOP or head in DEV or head in USERS:
        return head
    return "core"


def test_the_tree_is_what_the_mapping_installs() -> None:
    assert "consumers.delivery.dispatcher" in MODULES
    assert "producers.events" in MODULES
    assert "schemas" in MODULES
    assert "kafka" in MODULES


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    layer = _layer(module)
    forbidden: tuple[str, ...]
    if layer == "core":
        forbidden = USERS + TOP + DEV
    elif layer in USERS:
        forbidden = tuple(u for u in USERS if u != layer and u != "producers") + TOP + DEV
        if layer == "producers":
            forbidden = ("admin", "consumers", *TOP, *DEV)
    elif layer in DEV:
        forbidden = USERS + TOP
    else:
        forbidden = ()
    wrong = sorted(
        name
        for name in _imports(MODULES[module])
        if name and name.split(".")[0] in forbidden and _layer(name) != layer
    )
    assert not wrong, f"{module} ({layer}) imports {wrong}: move what both need below both"


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_no_io(module: str) -> None:
    io = sorted(n for n in _imports(MODULES[module]) if n in IO_LIBRARIES)
    assert not io, f"{module} is pure logic but imports {io}"


def test_the_admin_layers_point_down() -> None:
    assert "admin.api" not in _imports(MODULES["admin.service"])
    assert "admin.server" not in _imports(MODULES["admin.service"])
    assert "admin.server" not in _imports(MODULES["admin.api"])


def test_only_the_kafka_package_builds_clients() -> None:
    """`synctec_webhooks.kafka` is the only place a confluent-kafka client is built."""
    clients = {"Consumer", "Producer", "AdminClient", "SchemaRegistryClient"}
    builders = []
    for module, path in MODULES.items():
        if module.split(".")[0] == "kafka":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in clients:
                    builders.append(f"{module}:{node.lineno} {name}(...)")
    assert not builders, f"build clients through synctec_webhooks.kafka: {builders}"


def test_every_exception_is_under_the_one_root() -> None:
    """Exceptions are defined in errors.py (or derive from SyncTecError where they live)."""
    builtin_roots = {"Exception", "ValueError", "RuntimeError", "OSError", "KeyError"}
    strays = []
    for module, path in MODULES.items():
        if module == "errors":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", None) or getattr(b, "attr", None) for b in node.bases}
                if bases & builtin_roots and not bases & {"SyncTecError"}:
                    strays.append(f"{module}.{node.name}")
    assert not strays, f"derive these from synctec_webhooks.errors.SyncTecError: {strays}"
