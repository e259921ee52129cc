"""mlflow-exim: migrate MLflow data between tracking servers, faithfully.

Every CLI command is one call of a function exported here; each returns a
:class:`~mlflow_exim.report.Report` that lists every object's outcome.
"""

from mlflow_exim.catalog import open_bundle  # noqa: E402
from mlflow_exim.contents import inspect_bundle  # noqa: E402
from mlflow_exim.copying import copy_model_version, copy_run  # noqa: E402
from mlflow_exim.errors import BundleError, EximError  # noqa: E402
from mlflow_exim.exporter import (  # noqa: E402
    export_all,
    export_experiment,
    export_experiments,
    export_model,
    export_model_version,
    export_models,
    export_run,
)
from mlflow_exim.importer import (  # noqa: E402
    import_all,
    import_experiment,
    import_experiments,
    import_model,
    import_model_version,
    import_models,
    import_run,
)
from mlflow_exim.migrate import migrate  # noqa: E402
from mlflow_exim.report import Report  # noqa: E402
from mlflow_exim.verify import verify, verify_bundle  # noqa: E402
from mlflow_exim.version import __version__  # noqa: F401

__all__ = [
    "BundleError",
    "EximError",
    "Report",
    "copy_model_version",
    "copy_run",
    "export_all",
    "export_experiment",
    "export_experiments",
    "export_model",
    "export_model_version",
    "export_models",
    "export_run",
    "inspect_bundle",
    "import_all",
    "import_experiment",
    "import_experiments",
    "import_model",
    "import_model_version",
    "import_models",
    "import_run",
    "open_bundle",
    "migrate",
    "verify",
    "verify_bundle",
]
