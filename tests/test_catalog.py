"""The declared kinds (catalog, kind) and the layer contracts that keep imports one-way."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_exim import catalog
from mlflow_exim.bundle.format import Section
from mlflow_exim.kind import Kind

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _kind(name: str, *depends_on: str) -> Kind:
    return Kind(name=name, section=Section(name, f"{name}.json", lambda doc, path: None),
                depends_on=depends_on)


def test_kinds_come_after_what_they_depend_on_in_declaration_order_otherwise():
    ordered = catalog.in_dependency_order([
        _kind("versions", "models"), _kind("notes"), _kind("models", "runs"), _kind("runs")])
    assert [k.name for k in ordered] == ["runs", "models", "versions", "notes"]


def test_a_circle_or_an_undeclared_dependency_is_refused():
    with pytest.raises(ValueError, match="circle"):
        catalog.in_dependency_order([_kind("a", "b"), _kind("b", "a")])
    with pytest.raises(ValueError, match="undeclared kind ghosts"):
        catalog.in_dependency_order([_kind("a", "ghosts")])


def test_the_catalog_holds_every_kind_once_each_after_its_dependencies():
    names = [kind.name for kind in catalog.KINDS]
    assert names == ["experiments", "runs", "logged_models", "registered_models", "prompts",
                     "traces", "evaluation_datasets", "scorers"]
    assert catalog.NAMES == ("experiments", "runs", "logged_models", "registered_models",
                             "model_versions", "prompts", "prompt_versions", "traces",
                             "evaluation_datasets", "scorers")
    for position, kind in enumerate(catalog.KINDS):
        assert kind.section.name == kind.name
        assert set(kind.depends_on) <= set(names[:position])
        assert kind.plan and kind.apply and kind.export


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True,
                          text=True, timeout=300)


def test_the_layer_contracts_hold_and_catch_an_import_that_goes_up(tmp_path):
    kept = _lint(ROOT)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "0 broken" in kept.stdout

    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "mlflow_exim", tree / "mlflow_exim",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree)
    format_module = tree / "mlflow_exim" / "bundle" / "format.py"
    format_module.write_text(format_module.read_text()
                             + "\nfrom mlflow_exim.entities import run  # noqa: E402,F401\n")
    broken = _lint(tree)
    assert broken.returncode != 0
    assert "mlflow_exim.bundle.format -> mlflow_exim.entities.run" in broken.stdout
