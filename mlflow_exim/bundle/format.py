"""Names and version of the bundle format. Readers accept every version in READABLE_VERSIONS.

Version 2 added logged models and registered models; a version 1 bundle is a version 2
bundle without them, so one reader serves both.
"""

FORMAT_NAME = "mlflow-exim-bundle"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

MANIFEST_FILE = "manifest.json"
PROGRESS_FILE = "export-progress.json"
PARTIAL_SUFFIX = ".partial"

EXPERIMENTS_DIR = "experiments"
RUNS_DIR = "runs"
LOGGED_MODELS_DIR = "logged_models"
REGISTERED_MODELS_DIR = "registered_models"
ARTIFACTS_DIR = "artifacts"

# Inventory sections of the manifest, in import order, and the directory of each.
INVENTORY_DIRS = {
    "experiments": EXPERIMENTS_DIR,
    "runs": RUNS_DIR,
    "logged_models": LOGGED_MODELS_DIR,
    "registered_models": REGISTERED_MODELS_DIR,
}
# Sections whose objects carry an artifacts/ tree covered by the manifest's checksums.
WITH_ARTIFACTS = ("runs", "logged_models")
