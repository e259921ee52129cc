"""What a server says about its optional features, read as objects not carried."""

from mlflow_exim.not_carried import unknown_features
from mlflow_exim.report import not_carried


def test_an_enabled_feature_the_tool_does_not_know_is_reported_present():
    info = {"store_type": "SqlStore",
            "features_enabled": {"gateway": True, "sandboxes": True, "voice": False}}
    found = unknown_features(info)
    assert found == {"feature:sandboxes": -1}
    assert not_carried(found) == "feature:sandboxes present"


def test_a_server_that_names_no_features_reports_none():
    assert unknown_features({}) == {}
    assert unknown_features({"features_enabled": None}) == {}
