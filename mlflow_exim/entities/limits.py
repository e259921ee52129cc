"""MLflow's limits on what a bundle's documents may hold, checked when a bundle is opened.

A tracking server cuts a param value beyond 6,000 characters and a tag value beyond 8,000
to that length without an error (``MLFLOW_TRUNCATE_LONG_VALUES``), and refuses a key
beyond 250 halfway through an import. A bundle's values came from a server, so they fit;
one that does not was edited or made by hand, and is refused before anything is written,
with the file and the field named, rather than imported cut short. The numbers are
``mlflow.utils.validation``'s (MLflow 3), written out so that a client of another MLflow
version checks the same.
"""

from __future__ import annotations

from pathlib import Path

from mlflow_exim.errors import BundleError

KEY = 250  # param, tag and metric keys, experiment and registry tag keys
PARAM_VALUE = 6000
TAG_VALUE = 8000
EXPERIMENT_NAME = 500
EXPERIMENT_TAG_VALUE = 20000
REGISTRY_TAG_VALUE = 100_000
ALIAS = 255
DATASET = {"name": 500, "digest": 36, "source": 65535, "schema": 1048575,
           "profile": 16777215}
INPUT_TAG_KEY = 255
INPUT_TAG_VALUE = 500


def check_length(value: str | None, limit: int, path: Path, field: str) -> None:
    """``value`` (when a string) is at most ``limit`` characters."""
    if isinstance(value, str) and len(value) > limit:
        raise BundleError(path, f"field {field} is {len(value)} characters; MLflow takes at "
                                f"most {limit} (a server would cut it or refuse it)")


def check_mapping(values: dict, path: Path, field: str, *, value_limit: int,
                  key_limit: int = KEY) -> None:
    """Every key of ``values`` is at most ``key_limit`` characters, every value at most
    ``value_limit``."""
    for key, value in values.items():
        check_length(key, key_limit, path, f"{field} key {key[:40]!r}")
        check_length(value, value_limit, path, f"{field}[{key!r}]")
