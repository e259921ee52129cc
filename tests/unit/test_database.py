"""How a side names its database: the Endpoint, the config file, the values stored."""

from __future__ import annotations

import math
import pickle

import pytest

from mlflow_exim.config import load_config
from mlflow_exim.database import is_database_uri, stored_value
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.errors import EximError


def test_values_are_stored_as_mlflow_stores_them():
    assert stored_value(math.nan) == (0.0, True)
    assert stored_value(math.inf) == (1.7976931348623157e308, False)
    assert stored_value(-math.inf) == (-1.7976931348623157e308, False)
    assert stored_value(-2.5) == (-2.5, False)


@pytest.mark.parametrize("uri, expected", [
    ("sqlite:///x.db", True), ("postgresql://u@h/db", True),
    ("postgresql+psycopg2://h/db", True), ("mysql+pymysql://h/db", True),
    ("http://h:5000", False), ("file:///tmp/mlruns", False), ("x.db", False),
])
def test_database_uris_are_recognised(uri, expected):
    assert is_database_uri(uri) is expected


def test_an_embedded_store_is_its_own_database_and_a_server_names_its_own(tmp_path):
    embedded = Endpoint(f"sqlite:///{tmp_path / 'a.db'}")
    assert embedded.database.uri == f"sqlite:///{tmp_path / 'a.db'}"
    assert Endpoint("sqlite://").database is None  # in memory: nothing to share
    server = Endpoint("http://127.0.0.1:1", database_uri="postgresql://u:pw@db/mlflow")
    assert server.database.display == "postgresql://db/mlflow"
    assert Endpoint("http://127.0.0.1:1").database is None
    again = pickle.loads(pickle.dumps(server))  # a side's phase in its own process
    assert again.database.uri == "postgresql://u:pw@db/mlflow"


def test_a_database_is_not_given_twice_to_an_endpoint():
    endpoint = Endpoint("http://127.0.0.1:1", database_uri="sqlite:///x.db")
    with pytest.raises(EximError, match="already has"):
        Endpoint.connect(endpoint, database_uri="sqlite:///y.db")


def test_a_database_uri_that_is_not_one_is_refused():
    with pytest.raises(EximError, match="database http://h: expected"):
        Endpoint("http://127.0.0.1:1", database_uri="http://h")


def test_a_config_side_names_its_database_without_its_password(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("source: {tracking_uri: 'http://a:5000', database_uri: "
                    "'postgresql://mlflow@db/mlflow'}\ntarget: {tracking_uri: 'http://b:5000'}\n")
    config = load_config(path)
    assert config.source.database_uri == "postgresql://mlflow@db/mlflow"
    assert config.target.database_uri is None
    path.write_text("source: {tracking_uri: 'http://a:5000', database_uri: "
                    "'postgresql://mlflow:pw@db/mlflow'}\ntarget: {tracking_uri: 'http://b'}\n")
    with pytest.raises(EximError, match=r"source\.database_uri: holds a password") as refused:
        load_config(path)
    assert "pw@" not in str(refused.value)
