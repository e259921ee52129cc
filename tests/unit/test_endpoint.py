"""endpoint: credentials never shown."""

from __future__ import annotations

import pytest

from mlflow_exim import endpoint
from mlflow_exim.endpoint import display_uri, redact
from mlflow_exim.errors import EximError


@pytest.mark.parametrize("text, expected", [
    ("http://user:pw@host:5000/api", "http://***@host:5000/api"),
    ("https://token@host/x", "https://***@host/x"),
    ("failed: https://a:b@h1:443/x and http://c:d@h2",
     "failed: https://***@h1:443/x and http://***@h2"),
    ("http://host:5000/api", "http://host:5000/api"),
    ("sqlite:///tmp/mlflow.db", "sqlite:///tmp/mlflow.db"),
    ("no url here, mail me @ home", "no url here, mail me @ home"),
    ("GET http://h:1/api?key=s3cret&b=2 failed", "GET http://h:1/api?key=***&b=*** failed"),
    ("Max retries exceeded with url: /?key=s3cret/version (Caused by",
     "Max retries exceeded with url: /?key=*** (Caused by"),
    ("server http://h/?k=s3cret: refused", "server http://h/?k=***: refused"),
])
def test_redact(text, expected):
    assert redact(text) == expected


def test_redact_password_with_at_sign():
    assert "ss" not in redact("http://user:p@ss@host:5000/x").split("@host")[0]


@pytest.mark.parametrize("uri, expected", [
    ("https://user:pw@host:8443/path?q=1#f", "https://host:8443/path?q=***#f"),
    ("http://token@host/", "http://host/"),
    ("http://user:pw@host", "http://host"),
    ("http://host:5000", "http://host:5000"),
    ("https://host/api?token=s3cret&flag", "https://host/api?token=***&flag"),
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ("sqlite:////abs/path/mlflow.db", "sqlite:////abs/path/mlflow.db"),
])
def test_display_uri(uri, expected):
    assert display_uri(uri) == expected


def test_display_uri_ipv6():
    assert display_uri("http://u:p@[::1]:5000/x") == "http://[::1]:5000/x"


class _Flaky:
    """Answers as a server's store does under contention, ``fails`` times, then succeeds."""

    limit = 5

    def __init__(self, fails: int, message: str):
        self.calls, self.fails, self.message = 0, fails, message

    def log_inputs(self, run_id):
        self.calls += 1
        if self.calls <= self.fails:
            raise RuntimeError(self.message)
        return run_id


def _retrying(target):
    return endpoint._Retrying(target, endpoint._Health("http://host:5000"))


def test_contention_is_sent_again_until_it_succeeds(monkeypatch):
    monkeypatch.setattr(endpoint.time, "sleep", lambda seconds: None)
    flaky = _Flaky(2, "BAD_REQUEST: QueuePool limit of size 5 overflow 10 reached")
    store = _retrying(flaky)
    assert store.log_inputs("r1") == "r1" and flaky.calls == 3
    assert store.limit == 5  # attributes pass through


def test_other_errors_and_lasting_contention_are_raised(monkeypatch):
    monkeypatch.setattr(endpoint.time, "sleep", lambda seconds: None)
    wrong = _Flaky(1, "INVALID_PARAMETER_VALUE: no such run")
    with pytest.raises(RuntimeError, match="no such run"):
        _retrying(wrong).log_inputs("r1")
    assert wrong.calls == 1
    locked = _Flaky(99, "database is locked")
    with pytest.raises(RuntimeError, match="locked"):
        _retrying(locked).log_inputs("r1")
    assert locked.calls == endpoint.CONTENTION_ATTEMPTS


def test_an_outage_that_outlasted_the_retries_stops_later_calls_at_once():
    down = _Flaky(99, "API request to http://u:pw@host:5000/api failed with exception "
                      "HTTPConnectionPool: Max retries exceeded (Connection refused)")
    store = _retrying(down)
    with pytest.raises(RuntimeError, match="Max retries"):
        store.log_inputs("r1")
    with pytest.raises(EximError, match="unreachable after its retries") as caught:
        store.log_inputs("r2")
    assert down.calls == 1 and "pw" not in str(caught.value)


@pytest.mark.parametrize("attempts, timeout", [(0, None), (None, 0), (True, None), (2.5, 3)])
def test_retry_policy_refuses_what_is_not_a_whole_number(attempts, timeout):
    with pytest.raises(EximError):
        endpoint.RetryPolicy(attempts, timeout)


def test_retry_policy_is_carried_by_mlflows_environment():
    assert endpoint.RetryPolicy(3, 20).environment() == {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
    assert endpoint.RetryPolicy(None, 5).merged(endpoint.RetryPolicy(4)) == \
        endpoint.RetryPolicy(4, 5)


def test_a_token_endpoint_opens_its_client_only_where_the_environment_holds_the_token(
        monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    side = endpoint.Endpoint("http://127.0.0.1:9", endpoint.Credentials(token="s3cret"))
    assert side.uri == "http://127.0.0.1:9" and side.needs_own_process
    with pytest.raises(EximError, match="MLFLOW_TRACKING_TOKEN") as caught:
        _ = side.client
    assert "s3cret" not in str(caught.value) and "s3cret" not in repr(side)


@pytest.mark.parametrize("name, value, words", [
    ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0.5", "a whole number"),
    ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "many", "a whole number"),
    ("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "some", "a number"),
])
def test_an_http_setting_mlflow_cannot_read_is_one_line_before_any_request(
        monkeypatch, name, value, words):
    monkeypatch.setenv(name, value)
    with pytest.raises(EximError) as caught:  # no server there: the setting comes first
        endpoint.Endpoint.connect("http://127.0.0.1:9")
    assert str(caught.value) == (f"environment variable {name} is {value!r}: MLflow reads "
                                 f"it as {words}" + (" (no decimals)" if "whole" in words
                                                     else ""))
    monkeypatch.setenv(name, "1")
    with pytest.raises(EximError, match="cannot reach"):
        endpoint.Endpoint.connect("http://127.0.0.1:9")


def test_an_endpoint_travels_to_a_child_with_its_credentials_and_retry_policy():
    import pickle

    side = endpoint.Endpoint("http://127.0.0.1:9", endpoint.Credentials(token="t0k"),
                             endpoint.RetryPolicy(3, 7))
    again = pickle.loads(pickle.dumps(side))
    assert (again.uri, again.token, again.retry) == (side.uri, "t0k", side.retry)
    basic = endpoint.Endpoint("http://h:1", endpoint.Credentials("al", "pw"))
    assert pickle.loads(pickle.dumps(basic)).uri == "http://al:pw@h:1"
