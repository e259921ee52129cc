"""Prompts, evaluation datasets and scorers between real servers, and what is not carried.

``seeded`` builds, on the shared source, one experiment with a run, a text prompt with a
gap in its versions, aliases, a response format, a model config, version tags set later
and links to the experiment and the run; a chat prompt linked to no experiment; an
evaluation dataset built by hand with records of every source type, one naming a trace
of the experiment that is linked to a prompt version; two registered
scorers, one with several versions and one judged by a gateway endpoint with an online
sampling configuration; and the gateway endpoint that judge names, which the tool does not
carry. Names carry a
unique prefix, so nothing collides with other modules on the shared servers.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import Span
from mlflow.genai.scorers import Guidelines, scorer
from mlflow.store.model_registry.rest_store import RestStore as RegistryStore
from mlflow.store.tracking.rest_store import RestStore
from mlflow.tracing.constant import TraceTagKey
from mlflow.tracing.utils.prompt import update_linked_prompts_tag
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags

import mlflow_exim
from mlflow_exim import cli, lineage
from mlflow_exim.catalog import open_bundle
from mlflow_exim.kind import UPDATE
from tests.seed import prompt_links_settled
from tests.servers import Mlflow2Server
from tests.unit.samples import rehash

PREFIX = "g" + uuid.uuid4().hex[:6]
TEXT, CHAT = f"{PREFIX}-qa", f"{PREFIX}-chat"
RESPONSE_FORMAT = {"type": "object", "properties": {"answer": {"type": "string"}}}
MODEL_CONFIG = {"model_name": "gpt-4o", "temperature": 0.2, "max_tokens": 300}
CHAT_TEMPLATE = [{"role": "system", "content": "You are {{style}} \u2713"},
                 {"role": "user", "content": "{{question}}"}]
TRACE_ID = "tr-" + uuid.uuid4().hex


def _gateway_endpoint(uri: str, name: str) -> None:
    """A gateway endpoint ``name`` (secret, model definition, endpoint): a judge that names
    it can be registered and sampled online. The gateway is not carried, so a target needs
    its own."""
    def post(path: str, body: dict) -> dict:
        response = requests.post(f"{uri}/api/3.0/mlflow/gateway/{path}", json=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    secret = post("secrets/create", {"secret_name": name, "secret_value": {"api_key": "sk-x"},
                                     "provider": "openai"})["secret"]["secret_id"]
    model = post("model-definitions/create", {
        "name": name, "secret_id": secret, "provider": "openai",
        "model_name": "gpt-4o"})["model_definition"]["model_definition_id"]
    post("endpoints/create", {"name": name, "model_configs": [
        {"model_definition_id": model, "linkage_type": "PRIMARY", "weight": 1}]})


def _rows(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return list(connection.iterdump())


@pytest.fixture(scope="module")
def seeded(stack) -> dict:
    uri = stack.source.uri
    client = MlflowClient(uri, uri)
    experiment_id = client.create_experiment(f"{PREFIX}-agent")
    run_id = client.create_run(experiment_id, run_name="eval").info.run_id
    # text prompt: v1, v2 (response format, model config), v3 deleted (a gap), v4 chat
    client.register_prompt(TEXT, "Answer {{question}}", commit_message="first",
                           tags={"team": "search"})
    client.register_prompt(TEXT, "Answer {{question}} briefly", commit_message="json",
                           response_format=RESPONSE_FORMAT, model_config=MODEL_CONFIG)
    client.register_prompt(TEXT, "dropped", commit_message="to delete")
    client.register_prompt(TEXT, CHAT_TEMPLATE, commit_message="as chat")
    client.register_prompt(CHAT, CHAT_TEMPLATE, commit_message="chat one")
    client.register_prompt(CHAT, [{"role": "user", "content": "{{q}}?"}])
    prompt_links_settled()
    client.delete_prompt_version(TEXT, "3")
    client.set_prompt_version_tag(TEXT, "1", "reviewed", "later")  # after creation
    client.set_prompt_version_tag(TEXT, "2", "mlflow.prompt.associatedRunIds", run_id)
    client.set_prompt_alias(TEXT, "production", 4)
    client.set_prompt_alias(TEXT, "legacy", 1)
    client.set_prompt_tag(TEXT, "owner", "ml-team")
    client.set_prompt_tag(TEXT, "_mlflow_experiment_ids", f",{experiment_id},")
    client.set_tag(run_id, "mlflow.linkedPrompts",
                   json.dumps([{"name": TEXT, "version": "2"}]))
    client.delete_prompt_tag(CHAT, "_mlflow_experiment_ids")  # linked to no experiment
    # a trace linked to prompt version 2, as MLflow's client links them: an association
    # and a tag (the client's own call reads the process-wide tracking URI)
    store = client._tracking_client.store
    store.log_spans(experiment_id, [Span(ReadableSpan(
        "agent", SpanContext(int(TRACE_ID[3:], 16), 1, False, TraceFlags(1)),
        attributes={"mlflow.traceRequestId": json.dumps(TRACE_ID),
                    "mlflow.spanType": json.dumps("AGENT")},
        start_time=1_700_000_000_000_000_000, end_time=1_700_000_001_000_000_000))])
    store.start_trace(store.get_trace_info(TRACE_ID))  # its info, as a client writes it
    version = client.get_prompt_version(TEXT, 2)
    store.link_prompts_to_trace(TRACE_ID, [version])
    client.set_trace_tag(TRACE_ID, TraceTagKey.LINKED_PROMPTS,
                         update_linked_prompts_tag(None, [version]))
    # evaluation dataset built by hand
    dataset = client.create_dataset(f"{PREFIX}-golden", experiment_id=[experiment_id],
                                    tags={"stage": "gold"})
    store.upsert_dataset_records(dataset.dataset_id, [
        {"inputs": {"question": "capital of France?"}, "expectations": {"answer": "Paris"},
         "tags": {"lang": "en"}},
        {"inputs": {"question": "2+2", "nested": {"a": [1, 2.5, True, None]}},
         "outputs": {"answer": "4"},
         "source": {"source_type": "HUMAN", "source_data": {"user": "ann \u00e9"}}},
        {"inputs": {"question": "from a trace"}, "expectations": {"ok": True},
         "source": {"source_type": "TRACE", "source_data": {"trace_id": TRACE_ID}}},
        {"inputs": {"question": "from code"},
         "source": {"source_type": "CODE", "source_data": {"run_id": run_id}}},
    ])
    # scorers: two versions of a guideline judge, and a gateway judge sampled online
    endpoint = f"{PREFIX}-judge"
    for side in (stack.source.uri, stack.target.uri):
        _gateway_endpoint(side, endpoint)
    for guidelines in (["be polite"], ["be polite", "be brief"]):
        store.register_scorer(experiment_id, "polite", json.dumps(
            Guidelines(name="polite", guidelines=guidelines).model_dump()))
    store.register_scorer(experiment_id, "grounded", json.dumps(
        Guidelines(name="grounded", guidelines=["cite"], model=f"gateway:/{endpoint}")
        .model_dump()))
    store.upsert_online_scoring_config(experiment_id, "grounded", 0.25, "tags.env = 'prod'")
    yield {"experiment_id": experiment_id, "run_id": run_id,
           "dataset_id": dataset.dataset_id, "db": stack.source.log_path.parent / "source.db"}
    # Gone from the source again, so that later modules' whole-server exports do not take
    # a judge whose gateway endpoint their targets lack.
    for name in ("polite", "grounded"):
        store.delete_scorer(experiment_id, name)
    client.delete_dataset(dataset.dataset_id)
    for name in (TEXT, CHAT):
        for version in client.search_prompt_versions(name):
            client.delete_prompt_version(name, str(version.version))
        client.delete_prompt(name)


@pytest.fixture(scope="module")
def exported(stack, seeded, tmp_path_factory) -> tuple[Path, Path, mlflow_exim.Report]:
    """The experiment (with its scorers, dataset and linked prompt) and the unlinked chat
    prompt, exported; the source's database is the same, row for row, afterwards."""
    before = _rows(seeded["db"])
    root = tmp_path_factory.mktemp("genai")
    report = mlflow_exim.export_experiments(f"{PREFIX}-agent", root / "experiment",
                                            tracking_uri=stack.source.uri)
    prompts = mlflow_exim.export_prompts(CHAT, root / "prompts", tracking_uri=stack.source.uri)
    assert report.ok and prompts.ok, (report.summary(), prompts.summary())
    assert _rows(seeded["db"]) == before
    return root / "experiment", root / "prompts", report


def _after(calls: int, original):
    """``original`` for ``calls`` calls, then a kill."""
    left = [calls]

    def stopping(*args, **kwargs):
        if left[0] == 0:
            raise KeyboardInterrupt
        left[0] -= 1
        return original(*args, **kwargs)
    return stopping


# Where each import below is killed, in the order of the kinds: a prompt's second version
# made (still pending), a dataset's records sent (still pending), the second version of a
# scorer not yet registered.
KILLS = ((RegistryStore, "delete_model_version_tag", 1), (RestStore, "delete_dataset_tag", 0),
         (RestStore, "register_scorer", 2))


@pytest.fixture(scope="module")
def imported(stack, exported) -> dict:
    """Killed three times in the GenAI phases, then run again to the end."""
    experiment, prompts, _ = exported
    for owner, method, calls in KILLS:
        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(owner, method, _after(calls, getattr(owner, method)))
            with pytest.raises(KeyboardInterrupt):
                report = mlflow_exim.import_experiments(
                    experiment, tracking_uri=stack.target.uri, workers=1)
                pytest.fail(f"not killed in {method}: {report.summary()}")
    first = mlflow_exim.import_experiments(experiment, tracking_uri=stack.target.uri)
    chat = mlflow_exim.import_prompts(prompts, tracking_uri=stack.target.uri)
    assert first.ok and chat.ok, (first.summary(), chat.summary())
    return {"first": first, "ids": first.extra["id_map"]}


def test_export_takes_the_experiment_s_genai_objects(exported, seeded):
    experiment, prompts, report = exported
    bundle = open_bundle(experiment)
    assert list(bundle.documents["prompts"]) == [TEXT]
    assert sorted(d["name"] for d in bundle.documents["scorers"].values()) == \
        ["grounded", "polite"]
    assert list(bundle.documents["evaluation_datasets"]) == [seeded["dataset_id"]]
    doc = bundle.documents["prompts"][TEXT]
    assert [v["version"] for v in doc["versions"]] == ["1", "2", "4"]
    assert list(open_bundle(prompts).documents["prompts"]) == [CHAT]


def test_prompts_arrive_whole_with_gaps_aliases_and_links(stack, seeded, imported):
    src, dst = MlflowClient(stack.source.uri), MlflowClient(stack.target.uri)
    target_experiment = imported["ids"]["experiments"][seeded["experiment_id"]]
    target_run = imported["ids"]["runs"][seeded["run_id"]]
    for name in (TEXT, CHAT):
        mine, theirs = src.get_prompt(name), dst.get_prompt(name)
        assert theirs.description == mine.description
        assert {k: v for k, v in theirs.tags.items() if k != "_mlflow_experiment_ids"} == \
            {k: v for k, v in mine.tags.items() if k != "_mlflow_experiment_ids"}
    assert dst.get_prompt(TEXT).tags["_mlflow_experiment_ids"] == f",{target_experiment},"
    assert "_mlflow_experiment_ids" not in dst.get_prompt(CHAT).tags
    numbers = [int(v.version) for v in dst.search_prompt_versions(TEXT)]
    assert sorted(numbers) == [1, 2, 4]
    for number in (1, 2, 4):
        mine, theirs = src.get_prompt_version(TEXT, number), dst.get_prompt_version(TEXT, number)
        assert (theirs.template, theirs.commit_message, theirs.response_format,
                theirs.model_config, theirs.is_text_prompt) == \
            (mine.template, mine.commit_message, mine.response_format, mine.model_config,
             mine.is_text_prompt)
    assert dst.get_prompt_version(TEXT, 1).tags["reviewed"] == "later"
    assert dst.get_prompt_version(TEXT, 2).model_config == MODEL_CONFIG
    assert dst.get_prompt_version(TEXT, 2).tags["mlflow.prompt.associatedRunIds"] == target_run
    assert dst.get_prompt_version(TEXT, 4).template == CHAT_TEMPLATE
    assert dst.get_prompt_version_by_alias(TEXT, "production").version == 4
    assert dst.get_prompt_version_by_alias(TEXT, "legacy").version == 1
    assert json.loads(dst.get_run(target_run).data.tags["mlflow.linkedPrompts"]) == \
        [{"name": TEXT, "version": "2"}]
    assert TEXT not in [m.name for m in dst.search_registered_models()]  # never a model


def test_datasets_and_scorers_arrive_remapped(stack, seeded, imported):
    dst = MlflowClient(stack.target.uri)
    target_experiment = imported["ids"]["experiments"][seeded["experiment_id"]]
    target_run = imported["ids"]["runs"][seeded["run_id"]]
    dataset_id = imported["ids"]["evaluation_datasets"][seeded["dataset_id"]]
    dataset = dst.get_dataset(dataset_id)
    assert dataset.name == f"{PREFIX}-golden" and dataset.tags["stage"] == "gold"
    assert dst._tracking_client.store.get_dataset_experiment_ids(dataset_id) == \
        [target_experiment]
    records = {json.dumps(r["inputs"], sort_keys=True): r for r in
               (r.to_dict() for r in dst._tracking_client.store._load_dataset_records(
                   dataset_id)[0])}
    assert len(records) == 4
    by_question = {json.loads(k)["question"]: r for k, r in records.items()}
    assert by_question["capital of France?"]["expectations"] == {"answer": "Paris"}
    assert by_question["capital of France?"]["tags"]["lang"] == "en"
    assert by_question["2+2"]["inputs"]["nested"] == {"a": [1, 2.5, True, None]}
    assert by_question["2+2"]["source"] == {"source_type": "HUMAN",
                                            "source_data": {"user": "ann \u00e9"}}
    assert by_question["from a trace"]["source"]["source_data"] == {"trace_id": TRACE_ID}
    assert by_question["from code"]["source"]["source_data"] == {"run_id": target_run}
    store = dst._tracking_client.store
    versions = store.list_scorer_versions(target_experiment, "polite")
    assert [v.scorer_version for v in versions] == [1, 2]
    assert json.loads(versions[1]._serialized_scorer)["builtin_scorer_pydantic_data"][
        "guidelines"] == ["be polite", "be brief"]
    grounded = store.get_scorer(target_experiment, "grounded")
    (config,) = store.get_online_scoring_configs([grounded.scorer_id])
    assert (config.sample_rate, config.filter_string) == (0.25, "tags.env = 'prod'")


def test_verify_and_a_second_import_create_nothing(stack, exported, imported, tmp_path):
    experiment, prompts, _ = exported
    card = mlflow_exim.verify_bundle(experiment, stack.target.uri,
                                     id_map=imported["first"].extra["id_map"])
    assert card.ok, card.text()
    assert {k: card.totals[k] for k in ("prompts", "evaluation_datasets", "scorers")} == \
        {"prompts": 1, "evaluation_datasets": 1, "scorers": 2}, card.text()
    server = mlflow_exim.verify(stack.source.uri, stack.target.uri,
                                experiments=f"{PREFIX}-agent", id_map=imported["ids"])
    assert server.ok and server.totals["scorers"] == 2, server.text()
    again = mlflow_exim.import_experiments(experiment, tracking_uri=stack.target.uri)
    assert again.ok, again.summary()
    counts = again.counts()
    for kind in ("prompts", "prompt_versions", "evaluation_datasets", "scorers"):
        assert counts[kind]["ok"] == 0 and counts[kind]["skipped"] >= 1, (kind, counts)
    result = CliRunner().invoke(cli.main, ["import-prompts", "--input-dir", str(prompts),
                                           "--tracking-uri", stack.target.uri, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "skip    prompts" in result.output and "create" not in result.output
    runner, datasets = CliRunner(), tmp_path / "datasets"
    result = runner.invoke(cli.main, ["export-evaluation-datasets", "--datasets",
                                      f"{PREFIX}-gold*", "--output-dir", str(datasets),
                                      "--tracking-uri", stack.source.uri])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli.main, ["import-evaluation-datasets", "--input-dir", str(datasets),
                                      "--tracking-uri", stack.target.uri,
                                      "--report", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    counts = json.loads((tmp_path / "report.json").read_text())["counts"]
    assert set(counts) == {"evaluation_datasets"}, counts
    assert counts["evaluation_datasets"]["skipped"] == 1, counts


def test_what_is_not_carried_is_said(exported):
    experiment, _, report = exported
    left = report.extra["not_carried"]
    assert left["gateway_endpoints"] >= 1 and left["gateway_secrets"] >= 1, left
    assert json.loads((experiment / "manifest.json").read_text())["not_carried"] == left
    assert "NOT CARRIED" in report.summary() and "gateway_endpoints" in report.summary()


def test_a_scorer_the_target_refuses_fails_alone(stack, exported, tmp_path):
    """A custom-code scorer: the target refuses it and says why; the rest arrives."""
    experiment, _, _ = exported
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for path in experiment.rglob("*"):
        if path.is_file():
            copy = bundle / path.relative_to(experiment)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(path.read_bytes())

    @scorer
    def exact(outputs, expectations) -> bool:
        return outputs == expectations

    (scorer_file,) = [p for p in bundle.glob("scorers/*/scorer.json")
                      if json.loads(p.read_text())["name"] == "polite"]
    doc = json.loads(scorer_file.read_text())
    doc["versions"][0]["serialized_scorer"] = json.dumps(exact.model_dump())
    scorer_file.write_text(json.dumps(doc))
    rehash(bundle)  # the bundle stays whole: the server is what refuses the scorer
    report = mlflow_exim.import_experiments(
        bundle, tracking_uri=stack.target.uri,
        experiment_renames=[(f"{PREFIX}-agent", f"{PREFIX}-refused")])
    (failed,) = report.failures
    assert failed.kind == "scorers" and "Custom scorer registration" in failed.reason
    assert report.counts()["scorers"]["ok"] == 1
    assert report.counts()["evaluation_datasets"]["failed"] == 0


@pytest.fixture(scope="module")
def mlflow2(tmp_path_factory):
    server = Mlflow2Server("mlflow2-genai", tmp_path_factory.mktemp("mlflow2-genai"))
    try:
        server.wait()
        yield server
    finally:
        server.stop()


def test_a_target_without_genai_fails_one_line_per_object(mlflow2, exported):
    experiment, _, _ = exported
    report = mlflow_exim.import_experiments(experiment, tracking_uri=mlflow2.uri)
    failed = {(o.kind, o.name): o.reason for o in report.failures}
    assert set(failed) == {("traces", None), ("evaluation_datasets", f"{PREFIX}-golden"),
                           ("scorers", "polite"), ("scorers", "grounded")}, failed
    assert all("(MLflow 2.22" in reason for reason in failed.values()), failed
    assert "has no evaluation datasets" in failed[("evaluation_datasets", f"{PREFIX}-golden")]
    assert report.counts()["runs"]["ok"] == 1


def test_an_import_killed_in_each_genai_phase_resumes_with_nothing_twice(stack, seeded,
                                                                          imported):
    actions = {(o.kind, o.name): o.action for o in imported["first"].outcomes}
    assert actions[("scorers", "polite")] == UPDATE, actions
    dst = MlflowClient(stack.target.uri)
    assert sorted(int(v.version) for v in dst.search_prompt_versions(TEXT)) == [1, 2, 4]
    assert not any(lineage.PENDING in v.tags for v in dst.search_prompt_versions(TEXT))
    target_experiment = imported["ids"]["experiments"][seeded["experiment_id"]]
    store = dst._tracking_client.store
    assert [v.scorer_version for v in store.list_scorer_versions(target_experiment,
                                                                 "polite")] == [1, 2]
    dataset_id = imported["ids"]["evaluation_datasets"][seeded["dataset_id"]]
    assert len(store._load_dataset_records(dataset_id)[0]) == 4
    assert lineage.PENDING not in dst.get_dataset(dataset_id).tags


def test_a_trace_names_its_prompt_version_on_the_target(stack, seeded, imported):
    dst = MlflowClient(stack.target.uri)
    target_experiment = imported["ids"]["experiments"][seeded["experiment_id"]]
    trace_id = imported["ids"]["traces"].get(TRACE_ID, TRACE_ID)
    assert json.loads(dst.get_trace(trace_id).info.tags[TraceTagKey.LINKED_PROMPTS]) == \
        [{"name": TEXT, "version": "2"}]
    found = dst.search_traces(locations=[target_experiment],  # the server's link table
                              filter_string=f"tags.`{TraceTagKey.LINKED_PROMPTS}` = "
                                            f"'{TEXT}/2'")
    assert [t.info.trace_id for t in found] == [trace_id]


def test_a_second_copy_s_dataset_names_the_copy_s_traces(stack, seeded, exported, imported):
    experiment, _, _ = exported
    copy = mlflow_exim.import_experiments(
        experiment, tracking_uri=stack.target.uri,
        experiment_renames=[(f"{PREFIX}-agent", f"{PREFIX}-copy")])
    assert copy.ok, copy.summary()
    moved = copy.extra["id_map"]["traces"][TRACE_ID]
    assert moved != TRACE_ID
    dataset_id = copy.extra["id_map"]["evaluation_datasets"][seeded["dataset_id"]]
    records = MlflowClient(stack.target.uri)._tracking_client.store._load_dataset_records(
        dataset_id)[0]
    assert [r["source"]["source_data"]["trace_id"] for r in (r.to_dict() for r in records)
            if r.get("source", {}).get("source_type") == "TRACE"] == [moved]
    assert dataset_id != imported["ids"]["evaluation_datasets"][seeded["dataset_id"]]
    # verify pairs each copy with its own dataset, as the import does
    for ids in (copy.extra["id_map"], imported["ids"]):
        card = mlflow_exim.verify_bundle(experiment, stack.target.uri, id_map=ids)
        assert card.ok and card.totals["evaluation_datasets"] == 1, card.text()
    again = mlflow_exim.import_experiments(
        experiment, tracking_uri=stack.target.uri,
        experiment_renames=[(f"{PREFIX}-agent", f"{PREFIX}-copy")])
    assert again.counts()["evaluation_datasets"]["skipped"] == 1, again.summary()
    assert again.extra["id_map"]["evaluation_datasets"][seeded["dataset_id"]] == dataset_id


def test_scorer_numbers_and_deleted_experiments_are_said(tmp_path):
    """On embedded stores: a scorer whose version 2 was deleted arrives as 1 and 2, with a
    warning naming the numbers; a deleted experiment's scorers, which no server lists,
    are said to be left behind."""
    src, dst = f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'dst.db'}"
    client = MlflowClient(src, src)
    store = client._tracking_client.store
    kept = client.create_experiment("gaps")
    for guidelines in (["one"], ["two"], ["three"]):
        store.register_scorer(kept, "judge", json.dumps(
            Guidelines(name="judge", guidelines=guidelines).model_dump()))
    store.delete_scorer(kept, "judge", 2)
    gone = client.create_experiment("gone")
    store.register_scorer(gone, "judge", json.dumps(
        Guidelines(name="judge", guidelines=["x"]).model_dump()))
    client.delete_experiment(gone)
    exported = mlflow_exim.export_experiments("gaps,gone", tmp_path / "bundle",
                                              tracking_uri=src, export_deleted_runs=True)
    assert exported.ok, exported.summary()
    (deleted,) = [o for o in exported.outcomes if o.kind == "experiments"
                  and o.source_id == gone]
    assert any("its scorers, if it has any, are not exported" in w for w in deleted.warnings)
    assert len(open_bundle(tmp_path / "bundle").documents["scorers"]) == 1
    report = mlflow_exim.import_experiments(tmp_path / "bundle", tracking_uri=dst)
    assert report.ok, report.summary()
    (judge,) = [o for o in report.outcomes if o.kind == "scorers"]
    assert any("3 as 2" in w for w in judge.warnings), judge.warnings
