"""Names and version of the bundle format. Readers accept every version in READABLE_VERSIONS."""

FORMAT_NAME = "mlflow-exim-bundle"
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)

MANIFEST_FILE = "manifest.json"
PROGRESS_FILE = "export-progress.json"
PARTIAL_SUFFIX = ".partial"

EXPERIMENTS_DIR = "experiments"
RUNS_DIR = "runs"
ARTIFACTS_DIR = "artifacts"
