"""The on-disk bundle: a versioned directory tree of JSON (see docs/FORMAT.md)."""

from mlflow_exim.bundle.format import FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE
from mlflow_exim.bundle.reader import Bundle
from mlflow_exim.bundle.writer import BundleWriter

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MANIFEST_FILE", "Bundle", "BundleWriter"]
