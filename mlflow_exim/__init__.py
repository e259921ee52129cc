"""mlflow-exim: migrate MLflow data between tracking servers, faithfully.

Every CLI command is one call of a function exported here; each returns a
:class:`~mlflow_exim.report.Report` that lists every object's outcome.

The functions are imported on first use (``from mlflow_exim import export_all`` works as
usual): importing MLflow takes seconds, and ``mlflow-exim --help`` should not wait for it.
"""

from __future__ import annotations

import importlib
import sys
import types

from mlflow_exim.errors import BundleError, EximError
from mlflow_exim.version import __version__  # noqa: F401

# name -> the module that defines it
_LAZY = {
    **dict.fromkeys(("export_all", "export_evaluation_datasets", "export_experiment",
                     "export_experiments", "export_model", "export_model_version",
                     "export_models", "export_prompts", "export_run"),
                    "mlflow_exim.exporter"),
    **dict.fromkeys(("import_all", "import_evaluation_datasets", "import_experiment",
                     "import_experiments", "import_model", "import_model_version",
                     "import_models", "import_prompts", "import_run"),
                    "mlflow_exim.importer"),
    **dict.fromkeys(("copy_model_version", "copy_run"), "mlflow_exim.copying"),
    "export_traces": "mlflow_exim.exporter",
    "import_traces": "mlflow_exim.importer",
    "inspect_bundle": "mlflow_exim.contents",
    "check_bundle": "mlflow_exim.contents",
    "open_bundle": "mlflow_exim.catalog",
    "migrate": "mlflow_exim.migrate",
    "Report": "mlflow_exim.report",
    "merge_reports": "mlflow_exim.report",
    "verify": "mlflow_exim.verify",
    "verify_bundle": "mlflow_exim.verify",
}

__all__ = [
    "BundleError",
    "EximError",
    "Report",
    "check_bundle",
    "copy_model_version",
    "copy_run",
    "export_all",
    "export_evaluation_datasets",
    "export_experiment",
    "export_experiments",
    "export_model",
    "export_model_version",
    "export_models",
    "export_prompts",
    "export_run",
    "export_traces",
    "inspect_bundle",
    "import_all",
    "import_evaluation_datasets",
    "import_experiment",
    "import_experiments",
    "import_model",
    "import_model_version",
    "import_models",
    "import_prompts",
    "import_run",
    "import_traces",
    "merge_reports",
    "open_bundle",
    "migrate",
    "verify",
    "verify_bundle",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """``migrate`` and ``verify`` are functions named like their modules. Loading a
    submodule makes it an attribute of the package, which would hide the function; this
    keeps the function there, as an eager ``from mlflow_exim.migrate import migrate`` in
    this file used to."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
