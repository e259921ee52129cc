"""endpoint: credentials never shown."""

from __future__ import annotations

import pytest

from mlflow_exim import endpoint
from mlflow_exim.endpoint import display_uri, redact


@pytest.mark.parametrize("text, expected", [
    ("http://user:pw@host:5000/api", "http://***@host:5000/api"),
    ("https://token@host/x", "https://***@host/x"),
    ("failed: https://a:b@h1:443/x and http://c:d@h2",
     "failed: https://***@h1:443/x and http://***@h2"),
    ("http://host:5000/api", "http://host:5000/api"),
    ("sqlite:///tmp/mlflow.db", "sqlite:///tmp/mlflow.db"),
    ("no url here, mail me @ home", "no url here, mail me @ home"),
])
def test_redact(text, expected):
    assert redact(text) == expected


def test_redact_password_with_at_sign():
    assert "ss" not in redact("http://user:p@ss@host:5000/x").split("@host")[0]


@pytest.mark.parametrize("uri, expected", [
    ("https://user:pw@host:8443/path?q=1#f", "https://host:8443/path?q=1#f"),
    ("http://token@host/", "http://host/"),
    ("http://user:pw@host", "http://host"),
    ("http://host:5000", "http://host:5000"),
    ("https://host/api?x=1", "https://host/api?x=1"),
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


def test_contention_is_sent_again_until_it_succeeds(monkeypatch):
    monkeypatch.setattr(endpoint.time, "sleep", lambda seconds: None)
    flaky = _Flaky(2, "BAD_REQUEST: QueuePool limit of size 5 overflow 10 reached")
    store = endpoint._ContentionRetrying(flaky)
    assert store.log_inputs("r1") == "r1" and flaky.calls == 3
    assert store.limit == 5  # attributes pass through


def test_other_errors_and_lasting_contention_are_raised(monkeypatch):
    monkeypatch.setattr(endpoint.time, "sleep", lambda seconds: None)
    wrong = _Flaky(1, "INVALID_PARAMETER_VALUE: no such run")
    with pytest.raises(RuntimeError, match="no such run"):
        endpoint._ContentionRetrying(wrong).log_inputs("r1")
    assert wrong.calls == 1
    locked = _Flaky(99, "database is locked")
    with pytest.raises(RuntimeError, match="locked"):
        endpoint._ContentionRetrying(locked).log_inputs("r1")
    assert locked.calls == endpoint.CONTENTION_ATTEMPTS
