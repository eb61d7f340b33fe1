"""The floor plan holds: one import name, layers that import only downward, modules small enough to read.

A small AST check over the package's own source (no import-linter needed): every import of ours is
spelled `landsentry.*`, and each layer imports only the layers below it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = {"models": "landsentry.models", "training": "landsentry.training", "api": "landsentry.api", "landsentry": "landsentry"}
MODELS_LAYERS: dict[str, set[str]] = {
    "vocabulary": set(),
    "io": {"vocabulary"},
    "nn": {"vocabulary"},
    "data": {"vocabulary", "io"},
    "inference": {"vocabulary", "io", "nn"},
    "analysis": {"vocabulary", "io", "nn", "inference"},
    "evaluation": {"vocabulary", "io", "nn", "inference", "analysis", "data"},
    "bench": {"vocabulary", "io", "nn", "inference", "analysis"},
    "batch": {"vocabulary", "io", "nn", "inference", "analysis"},
    "cli": {"vocabulary", "io", "nn", "inference", "analysis", "data", "evaluation", "bench", "batch"},
}
MAX_LINES = 400
WHOLE = "reads best whole"
"""A module over MAX_LINES says in its docstring why it is one idea that reads best whole."""


def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package."""
    found = {}
    for folder, dotted in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([dotted, *parts])] = path
    return found


def imports(path: Path) -> list[str]:
    """Every module name an import statement in the file names (inside functions too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


MODULES = modules()


def ours(name: str) -> bool:
    return name == "landsentry" or name.startswith("landsentry.")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_of_ours_use_the_one_namespace(module):
    bare = [n for n in imports(MODULES[module]) if n.split(".")[0] in ("models", "training", "api")]
    assert not bare, f"{module} imports {bare}: write landsentry.models / landsentry.training / landsentry.api"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("landsentry.models.")))
def test_models_layers_import_only_downward(module):
    layer = module.split(".")[2]
    allowed = MODELS_LAYERS.get(layer)
    assert allowed is not None, f"{module}: layer {layer!r} is not in the map (MODELS_LAYERS); add it with its place"
    for name in filter(ours, imports(MODULES[module])):
        parts = name.split(".")
        assert parts[:2] == ["landsentry", "models"], f"{module} imports {name}: models/ never imports training or the service"
        target = parts[2] if len(parts) > 2 else None
        assert target is None or target == layer or target in allowed, f"{module} ({layer}) imports {name} ({target}): not below it"


def test_vocabulary_imports_nothing_of_ours():
    for module in (m for m in MODULES if m.startswith("landsentry.models.vocabulary")):
        ours_ = [n for n in imports(MODULES[module]) if ours(n) and not n.startswith("landsentry.models.vocabulary")]
        assert not ours_, f"{module} imports {ours_}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("landsentry.api")))
def test_the_service_never_imports_training(module):
    bad = [n for n in imports(MODULES[module]) if n.startswith("landsentry.training")]
    assert not bad, f"{module} imports {bad}: the service runs training as a process, never in-process"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("landsentry.training")))
def test_training_never_imports_the_service(module):
    bad = [n for n in imports(MODULES[module]) if n.startswith("landsentry.api")]
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_are_small_enough_to_read(module):
    path = MODULES[module]
    lines = len(path.read_text().splitlines())
    if lines > MAX_LINES:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert WHOLE in doc, f"{module} has {lines} lines (> {MAX_LINES}): split it by job, or say in its docstring why it {WHOLE}"


def test_the_check_sees_the_whole_package():
    assert {"landsentry.models.vocabulary.kinds", "landsentry.models.analysis.pipeline", "landsentry.api.app",
            "landsentry.training.train", "landsentry.cli"} <= set(MODULES)
