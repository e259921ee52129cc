"""What a source server holds that mlflow-exim does not carry, counted so that nothing is
left behind without a word.

An export asks the source for each kind of object below (one list request per kind, or
per exported experiment for those that live in experiments) and records the counts in the
report and the manifest as ``not_carried``, with a warning on stderr. A server without the
endpoint (its router's 404, or a 503 for workspaces a server runs without) holds none. An
embedded store is not asked: its gateway, webhooks and users live in no store.

Label schemas are not asked for: a server answers the first listing of an experiment's
label schemas by writing its default schema into it, and an export never writes to its
source (MLflow 3.17 reads them otherwise only one by id or by name). They are named,
uncounted, in the documentation of what is not carried.

A server lists neither its routes nor its kinds of object (MLflow 3.17 serves no OpenAPI
document); what it does say is which optional features it runs (``features_enabled`` in
``/api/3.0/mlflow/server-info``). An enabled feature this tool does not know is reported
as ``feature:<name>``, present, uncounted: a newer server's objects are not left behind
without a word where the server says it has such a feature.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from mlflow_exim.endpoint import Endpoint
from mlflow_exim.errors import EximError
from mlflow_exim.report import not_carried

log = logging.getLogger("mlflow_exim")


@dataclass(frozen=True)
class _Probe:
    """One kind of object: how to list it, and under which key of the answer."""

    name: str
    method: str
    path: str
    items: str
    per_experiment: bool = False


_PROBES = (
    _Probe("webhooks", "GET", "/api/2.0/mlflow/webhooks", "webhooks"),
    _Probe("gateway_endpoints", "GET", "/api/3.0/mlflow/gateway/endpoints/list", "endpoints"),
    _Probe("gateway_secrets", "GET", "/api/3.0/mlflow/gateway/secrets/list", "secrets"),
    _Probe("gateway_model_definitions", "GET", "/api/3.0/mlflow/gateway/model-definitions/list",
           "model_definitions"),
    _Probe("gateway_budgets", "GET", "/api/3.0/mlflow/gateway/budgets/list", "budget_policies"),
    _Probe("gateway_guardrails", "GET", "/api/3.0/mlflow/gateway/guardrails/list", "guardrails"),
    _Probe("mcp_servers", "GET", "/api/3.0/mlflow/mcp-servers", "mcp_servers"),
    _Probe("skills", "GET", "/api/3.0/mlflow/skills", "skills"),
    _Probe("workspaces", "GET", "/api/3.0/mlflow/workspaces", "workspaces"),
    _Probe("users", "GET", "/api/2.0/mlflow/users/list", "users"),
    _Probe("issues", "POST", "/api/3.0/mlflow/issues/search", "issues", per_experiment=True),
    _Probe("review_queues", "GET", "/api/3.0/mlflow/review-queues/list", "review_queues",
           per_experiment=True),
)
# The features of server-info's ``features_enabled`` whose objects the probes above count.
_KNOWN_FEATURES = frozenset({"gateway"})
_ABSENT = (404, 501, 503)  # no such endpoint, or a feature the server runs without
_PAGES = 100  # at most this many pages per list; more is reported as "at least"


def survey(src: Endpoint, experiment_ids: Iterable[str]) -> dict[str, int]:
    """Per kind of object not carried, how many the source holds (kinds it has none of are
    left out). A probe that fails otherwise is counted as -1: present, number unknown."""
    if not src.is_http:
        return {}
    experiment_ids = list(experiment_ids)
    found = {}
    for probe in _PROBES:
        scopes = experiment_ids if probe.per_experiment else [None]
        total = 0
        for experiment_id in scopes:
            count = _count(src, probe, experiment_id)
            if count is None:
                break
            if count < 0:
                total = -1
                break
            total += count
        if total:
            found[probe.name] = total
    return {**found, **unknown_features(src.server_info.get("server_info") or {})}


def unknown_features(server_info: dict) -> dict[str, int]:
    """The enabled features a server's ``server-info`` names that this tool does not know,
    each as present with a count unknown (-1)."""
    features = server_info.get("features_enabled")
    if not isinstance(features, dict):
        return {}
    return {f"feature:{name}": -1 for name, enabled in sorted(features.items())
            if enabled and name not in _KNOWN_FEATURES}


def _count(src: Endpoint, probe: _Probe, experiment_id: str | None) -> int | None:
    """How many items one list holds (None: the server has no such endpoint)."""
    total, token = 0, None
    for _ in range(_PAGES):
        scope = {"experiment_id": experiment_id} if experiment_id else {}
        query = {**scope, **({"page_token": token} if token else {})}
        try:
            response = src.request(probe.method, probe.path, **(
                {"params": query} if probe.method == "GET" else {"json": query}))
        except EximError as exc:  # MLflow's HTTP client turns a 503 into an error
            return None if "503" in str(exc) else -1
        if response.status_code in _ABSENT:
            return None
        if response.status_code != 200:
            return -1
        try:
            answer = response.json()
        except ValueError:
            return -1
        items = answer.get(probe.items) or []
        total += len(items)
        token = answer.get("next_page_token")
        if not token:
            return total
    return total


def warn(found: dict[str, int], where: str) -> None:
    if found:
        log.warning("%s holds objects mlflow-exim does not carry; they are left behind: %s",
                    where, not_carried(found))
