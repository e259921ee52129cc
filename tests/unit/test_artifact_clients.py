"""The storage client an artifact root needs, and how its URI is shown."""

from __future__ import annotations

import sys

import pytest

from mlflow_exim.endpoint import redact
from mlflow_exim.entities.artifacts import require_client
from mlflow_exim.errors import EximError


@pytest.mark.parametrize("root, modules, extra", [
    ("s3://bucket/1", ("boto3", "botocore"), "s3"),
    ("r2://bucket/1", ("botocore",), "s3"),
    ("gs://bucket/1", ("google.cloud.storage",), "gcs"),
    ("wasbs://c@acct.blob.core.windows.net/1", ("azure.storage.blob",), "azure"),
    ("abfss://c@acct.dfs.core.windows.net/1", ("azure.storage.filedatalake",), "azure"),
])
def test_a_missing_client_names_the_owner_the_root_and_the_extra(root, modules, extra,
                                                                  monkeypatch):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(EximError) as raised:
        require_client(root, "experiment 3 (churn)")
    assert str(raised.value) == (f"artifacts of experiment 3 (churn) are in {root}: install "
                                 f"mlflow-exim[{extra}] (no module {', '.join(modules)})")


@pytest.mark.parametrize("root", ["mlflow-artifacts:/3", "file:///tmp/a", "/tmp/a", "", None,
                                  "s3://bucket/1", "gs://bucket/1",
                                  "wasbs://c@acct.blob.core.windows.net/1"])
def test_no_error_where_nothing_is_missing(root):
    """Proxied and local roots need no client; the test extra installs the others."""
    require_client(root, "experiment 3")


@pytest.mark.parametrize("text", ["in wasbs://container@acct.blob.core.windows.net/x: y",
                                  "abfss://fs@acct.dfs.core.windows.net/x"])
def test_an_azure_container_is_not_taken_for_credentials(text):
    assert redact(text) == text
    assert redact("see http://u:p@host/ and " + text) == "see http://***@host/ and " + text
