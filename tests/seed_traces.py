"""Agent-style traces on a server, made the way an application makes them: MLflow's fluent
tracing API, which keeps process-wide state, so this runs as a process of its own.

``python -m tests.seed_traces URI EXPERIMENT_NAME`` prints the ids it made as JSON:
nested spans five levels deep (agent > step > plan > llm > tokenize), a tool span that
fails with an exception event and its successful retry, a retriever span with attributes
of every type and an event, an attachment, sessions and users; a trace made in a run
(``mlflow.sourceRun``), one linked to another run with ``link_traces_to_run``, one made
for a logged model (``mlflow.modelId``), one that fails; tags set after the traces ended;
feedback and expectations of several JSON types on traces and spans, with a source,
rationale, metadata, an error, a run, and an override.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"

import mlflow  # noqa: E402
from mlflow.entities import (  # noqa: E402
    AssessmentError,
    AssessmentSource,
    Expectation,
    Feedback,
    SpanEvent,
    SpanType,
)
from mlflow.tracing.attachments import Attachment  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@mlflow.trace(span_type=SpanType.RETRIEVER)
def retrieve(query: str) -> list[dict]:
    span = mlflow.get_current_active_span()
    span.set_attributes({"int": 7, "float": 0.25, "str": "h\u00e9llo \u2713", "bool": False,
                         "list": [1, "two", 3.5], "dict": {"k": [1, {"n": None}]}})
    span.add_event(SpanEvent("cache-miss", timestamp=1_700_000_000_000_000_123,
                             attributes={"key": query, "size": 3, "hit": False}))
    return [{"doc": "a", "score": 0.9}, {"doc": "b", "score": 0.4}]


@mlflow.trace(span_type=SpanType.TOOL)
def flaky_tool(attempt: int) -> dict:
    if attempt == 0:
        raise TimeoutError("tool timed out")
    return {"ok": True, "attempt": attempt}


@mlflow.trace(span_type=SpanType.LLM)
def llm(prompt: str, image: bool) -> str:
    with mlflow.start_span("tokenize", span_type=SpanType.PARSER) as span:
        span.set_inputs({"text": prompt, **({"image": Attachment(
            content_type="image/png", content_bytes=PNG)} if image else {})})
        span.set_outputs({"tokens": len(prompt.split())})
    return f"answer to {prompt}"


@mlflow.trace(span_type=SpanType.CHAIN)
def plan(query: str, image: bool) -> str:
    retrieve(query)
    for attempt in range(2):
        try:
            flaky_tool(attempt)
            break
        except TimeoutError:
            continue
    return llm(query, image)


@mlflow.trace(span_type=SpanType.AGENT)
def agent(query: str, user: str, session: str, image: bool = False, fail: bool = False) -> str:
    mlflow.update_current_trace(user=user, session_id=session, client_request_id=f"req-{query}",
                                metadata={"custom.key": "custom \u00fc"},
                                tags={"team": "\u00fcn\u00efcode \u2713"})
    with mlflow.start_span("step", span_type=SpanType.CHAIN):
        answer = plan(query, image)
    if fail:
        raise ValueError("the agent gave up")
    return answer


def _run_agent(*args, **kwargs) -> str:
    with contextlib.suppress(ValueError):
        agent(*args, **kwargs)
    return mlflow.get_last_active_trace_id()


def _span_id(client, trace_id: str, name: str) -> str:
    return next(s.span_id for s in client.get_trace(trace_id).data.spans if s.name == name)


def seed(uri: str, name: str) -> dict:
    mlflow.set_tracking_uri(uri)  # a process of its own: global state is fine here
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment(name)
    mlflow.set_experiment(experiment_id=experiment_id)
    ids: dict = {"experiment_id": experiment_id}
    with mlflow.start_run(run_name="agent-run") as run:
        ids["in_run"] = _run_agent("in a run", "alice", "s-1", image=True)
    ids["run"] = run.info.run_id
    other = client.create_run(experiment_id, run_name="linked-run")
    client.set_terminated(other.info.run_id)
    ids["linked_run"] = other.info.run_id
    ids["free"] = _run_agent("no run", "bob", "s-1")
    client.link_traces_to_run([ids["free"]], other.info.run_id)
    model = client.create_logged_model(experiment_id, name="agent-model")
    ids["model"] = model.model_id
    mlflow.set_active_model(model_id=model.model_id)
    ids["for_model"] = _run_agent("with a model", "carol", "s-2")
    mlflow.clear_active_model()
    ids["failed"] = _run_agent("failing", "bob", "s-2", fail=True)

    for trace_id in (ids["in_run"], ids["free"], ids["for_model"], ids["failed"]):
        client.set_trace_tag(trace_id, "reviewed", "later \u2713")
    trace_id = ids["in_run"]
    judge = AssessmentSource("LLM_JUDGE", "judge-v1")
    first = mlflow.log_feedback(trace_id=trace_id, name="relevance", value=0.75, source=judge,
                                rationale="mostly on topic", metadata={"k": "v"})
    mlflow.override_feedback(trace_id=trace_id, assessment_id=first.assessment_id, value=0.5,
                             rationale="a human disagreed",
                             source=AssessmentSource("HUMAN", "dana"))
    mlflow.log_feedback(trace_id=trace_id, name="grounded", value={"score": 1, "ok": True},
                        source=judge, span_id=_span_id(client, trace_id, "retrieve"))
    mlflow.log_feedback(trace_id=trace_id, name="safety", source=judge,
                        error=AssessmentError(error_code="TIMEOUT",
                                              error_message="judge timed out"))
    mlflow.log_expectation(trace_id=trace_id, name="expected", value={"answer": "42",
                                                                      "steps": [1, 2]},
                           source=AssessmentSource("HUMAN", "erin"))
    mlflow.log_expectation(trace_id=trace_id, name="expected_tool", value="flaky_tool",
                           span_id=_span_id(client, trace_id, "flaky_tool"))
    mlflow.log_assessment(trace_id=trace_id, assessment=Feedback(
        name="in_run_score", value=True, source=judge,
        metadata={"mlflow.assessment.sourceRunId": run.info.run_id}))
    mlflow.log_assessment(trace_id=ids["free"],
                          assessment=Expectation(name="labels", value=["a", "b"]))
    return ids


if __name__ == "__main__":
    print(json.dumps(seed(sys.argv[1], sys.argv[2])))
