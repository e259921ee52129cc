"""Google Cloud Storage and Azure Blob Storage emulators as real processes on free loopback
ports, for the tests of artifact roots in those stores (tests/test_stores.py).

* GCS: ``gcp-storage-emulator`` (PyPI, in the test extra); clients find it through
  ``STORAGE_EMULATOR_HOST``.
* Azure Blob: Azurite (npm), installed by ``make azurite`` (which ``make test`` and CI run)
  under ``AZURITE_DIR``; clients find it through ``AZURE_STORAGE_CONNECTION_STRING``.

A missing emulator is an error, never a skip: CI installs both.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.servers import BIN, Process, free_port

AZURITE_DIR = Path(os.environ.get("AZURITE_DIR",
                                  Path.home() / ".cache" / "mlflow-exim" / "azurite"))
AZURITE_BLOB = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
# Azurite's one account, with its published development key.
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
             "KBHBeksoGMGw==")


class GcsEmulator(Process):
    """In memory, with ``bucket`` created at start."""

    def __init__(self, log_dir: Path, bucket: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__("gcs", [str(BIN / "gcp-storage-emulator"), "start", "--host",
                                 "127.0.0.1", "--port", str(self.port), "--default-bucket",
                                 bucket, "--in-memory"], log_dir)

    def wait(self) -> None:
        self.wait_http(f"{self.url}/storage/v1/b")


class Azurite(Process):
    """Azurite's blob service, keeping its data under ``log_dir``."""

    def __init__(self, log_dir: Path):
        if not AZURITE_BLOB.exists():
            raise RuntimeError(f"{AZURITE_BLOB} is missing: run `make azurite` (needs npm)")
        self.port = free_port()
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};AccountKey={AZURE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURE_ACCOUNT};")
        super().__init__("azurite", [str(AZURITE_BLOB), "--blobHost", "127.0.0.1",
                                     "--blobPort", str(self.port),
                                     "--location", str(log_dir / "azurite-data"),
                                     "--skipApiVersionCheck", "--loose",
                                     "--disableTelemetry"], log_dir)

    def wait(self, timeout: float = 120.0) -> None:
        """Until the service answers; any HTTP answer will do (unsigned requests get 4xx)."""
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"azurite exited with {self.proc.returncode}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                requests.get(f"http://127.0.0.1:{self.port}/{AZURE_ACCOUNT}", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.3)
        raise RuntimeError(f"azurite did not answer within {timeout}s:\n"
                           + self.log_path.read_text()[-3000:])
