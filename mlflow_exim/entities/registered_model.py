"""Registered models and their versions: the bundle document, export and import.

``registered_model.json`` holds the model (name, description, tags, aliases) and every
exported version. Each version says where its files are in ``source_ref``, in terms of
objects of the bundle, so that the importer can point the new version at the migrated
copy instead of at source storage:

* ``{"kind": "logged_model", "model_id": "m-…"}``: the source was ``models:/m-…``;
* ``{"kind": "run_artifact", "form": "runs" | "artifact_uri", "path": "model"}``: the
  source lay inside the version's run artifacts (``runs:/<run>/model`` or
  ``<run artifact_uri>/model``);
* ``{"kind": "external"}``: anything else; the source is kept as it is.

Prompts live in the registry too, as models tagged ``mlflow.prompt.is_prompt``; they are
never treated as models here.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities.model_registry import (
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelTag,
)
from mlflow.exceptions import MlflowException

from mlflow_exim import lineage
from mlflow_exim.bundle.format import Section, singular
from mlflow_exim.bundle.jsonio import write_json
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import limits, names
from mlflow_exim.entities.logged_model import MODEL_VERSIONS_TAG
from mlflow_exim.errors import BundleError, EximError
from mlflow_exim.idmap import IdMap
from mlflow_exim.kind import (
    CREATE,
    SKIP,
    UPDATE,
    ExportContext,
    ImportContext,
    Kind,
    Step,
    Task,
    planning,
)
from mlflow_exim.report import FAILED, Outcome, one_line
from mlflow_exim.work import paged

REGISTERED_MODEL_FILE = "registered_model.json"
PROMPT_TAG = "mlflow.prompt.is_prompt"
NO_STAGE = "None"
STAGES = (NO_STAGE, "Staging", "Production", "Archived")
_LOGGED_MODEL_URI = re.compile(r"models:/(m-[0-9a-f]+)/?")


# Reading the source ---------------------------------------------------------------------

def is_prompt(model: RegisteredModel) -> bool:
    return str((model.tags or {}).get(PROMPT_TAG, "")).lower() == "true"


def find(src: Endpoint, name: str) -> RegisteredModel:
    try:
        model = src.client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - "not found" and friends
        model = None
    if model is None or is_prompt(model):
        raise EximError(f"registered model {name!r} not found on {src.display_uri}")
    return model


def source_name_of(tags: dict) -> str | None:
    """The source name a model imported with source tags keeps, else None. An import
    recognises its model by target name; verify, given neither an id map nor a matching
    name (a renamed import), falls back on this tag."""
    return tags.get(lineage.FIELD + "name")


def all_models(src: Endpoint) -> list[RegisteredModel]:
    """Every registered model, prompts excluded."""
    return [model for model in paged(src.client.search_registered_models)
            if not is_prompt(model)]


def versions(src: Endpoint, name: str) -> list[ModelVersion]:
    """Every visible version of ``name``, in version order (deleted ones are invisible).

    A quote cannot be escaped in a version filter (``'it\\'s'`` and ``'it''s'`` silently
    match nothing), so a name holding one is searched with LIKE, ``_`` standing for the
    quote, and the results are filtered by exact name."""
    if "'" in name:
        filter_string = "name LIKE '" + name.replace("'", "_") + "'"
    else:
        filter_string = f"name = '{name}'"
    return sorted((_numbered(v) for v in paged(src.client.search_model_versions, filter_string)
                   if v.name == name), key=lambda v: int(v.version))


def get_version(src: Endpoint, name: str, number: str) -> ModelVersion:
    """One version of ``name``, with its number as a string (see :func:`versions`)."""
    return _numbered(src.client.get_model_version(name, number))


def _numbered(version: ModelVersion) -> ModelVersion:
    """The version with its number as the string MLflow declares it to be: a server sends
    one, but MLflow's embedded SQL store hands out an int, which compares unequal to the
    numbers users give. Versions are read through here to be selected and compared."""
    version._version = str(version.version)  # the entity has no setter for it
    return version


def select_versions(all_versions: list[ModelVersion], *, numbers: list[str] | None = None,
                    stages: list[str] | None = None,
                    latest: bool = False) -> list[ModelVersion]:
    """The versions asked for: listed numbers, or those in the given stages, or the latest
    of each stage; all of them by default. A listed number that does not exist is an
    error."""
    if numbers:
        by_number = {v.version: v for v in all_versions}
        missing = [n for n in numbers if n not in by_number]
        if missing:
            raise EximError(f"version(s) {', '.join(missing)} not found")
        return [by_number[n] for n in sorted(set(numbers), key=int)]
    if stages:
        unknown = [s for s in stages if s.lower() not in {x.lower() for x in STAGES}]
        if unknown:
            raise EximError(f"unknown stage(s) {', '.join(unknown)}; stages are "
                            f"{', '.join(STAGES)}")
        wanted = {s.lower() for s in stages}
        all_versions = [v for v in all_versions if (v.current_stage or NO_STAGE).lower() in wanted]
    if latest:
        newest: dict[str, ModelVersion] = {}
        for v in all_versions:
            newest[v.current_stage or NO_STAGE] = v  # in version order: the last one wins
        all_versions = sorted(newest.values(), key=lambda v: int(v.version))
    return all_versions


def source_ref(version: ModelVersion, run_artifact_uri: str | None) -> dict:
    """Where the version's files are, relative to the objects a bundle holds."""
    source = version.source or ""
    if match := _LOGGED_MODEL_URI.fullmatch(source):
        return {"kind": "logged_model", "model_id": match.group(1)}
    if version.run_id and source.startswith("runs:/"):
        run_id, _, path = source[len("runs:/"):].partition("/")
        if run_id == version.run_id:
            return {"kind": "run_artifact", "form": "runs", "path": path.strip("/")}
    if run_artifact_uri:
        root = run_artifact_uri.rstrip("/")
        if source.rstrip("/") == root or source.startswith(root + "/"):
            return {"kind": "run_artifact", "form": "artifact_uri",
                    "path": source[len(root):].strip("/")}
    return {"kind": "external"}


# The document ---------------------------------------------------------------------------

def version_doc(version: ModelVersion, ref: dict) -> dict:
    return {
        "version": str(version.version),
        "description": version.description or "",
        "tags": dict(version.tags or {}),
        "current_stage": version.current_stage or NO_STAGE,
        "status": version.status,
        "status_message": version.status_message,
        "source": version.source,
        "source_ref": ref,
        "run_id": version.run_id or None,
        "run_link": version.run_link or None,
        "user_id": version.user_id or None,
        "creation_timestamp": version.creation_timestamp,
        "last_updated_timestamp": version.last_updated_timestamp,
    }


def to_doc(model: RegisteredModel, version_docs: list[dict]) -> dict:
    return {
        "name": model.name,
        "description": model.description or "",
        "tags": dict(model.tags or {}),
        "aliases": {alias: str(v) for alias, v in (model.aliases or {}).items()},
        "creation_timestamp": model.creation_timestamp,
        "last_updated_timestamp": model.last_updated_timestamp,
        "versions": sorted(version_docs, key=lambda v: int(v["version"])),
    }


def export(doc: dict, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / REGISTERED_MODEL_FILE, doc)


def validate(doc, path: Path) -> None:
    def need(container, key, kind, where=""):
        value = container.get(key) if isinstance(container, dict) else None
        if not isinstance(value, kind):
            raise BundleError(path, f"field {where}{key!r} is missing or has the wrong type")
        return value

    if not isinstance(doc, dict):
        raise BundleError(path, "must hold a JSON object")
    need(doc, "name", str)
    need(doc, "description", str)
    for section in ("tags", "aliases"):
        if not all(isinstance(v, str) for v in need(doc, section, dict).values()):
            raise BundleError(path, f"every value in {section!r} must be a string")
    limits.check_mapping(doc["tags"], path, "tags", value_limit=limits.REGISTRY_TAG_VALUE)
    for alias in doc["aliases"]:
        limits.check_length(alias, limits.ALIAS, path, f"aliases key {alias[:40]!r}")
    numbers = set()
    for v in need(doc, "versions", list):
        number = need(v, "version", str, "versions[].")
        if not number.isdigit():
            raise BundleError(path, f"version {number!r} is not a number")
        if number in numbers:
            raise BundleError(path, f"field versions[] lists version {number} twice")
        numbers.add(number)
        if not all(isinstance(t, str) for t in need(v, "tags", dict, "versions[].").values()):
            raise BundleError(path, f"version {number}: every tag value must be a string")
        limits.check_mapping(v["tags"], path, f"versions[{number}].tags",
                             value_limit=limits.REGISTRY_TAG_VALUE)
        need(v, "description", str, "versions[].")
        need(v, "current_stage", str, "versions[].")
        need(v, "run_id", (str, type(None)), "versions[].")
        ref = need(v, "source_ref", dict, "versions[].")
        kind = ref.get("kind")
        if kind == "logged_model":
            need(ref, "model_id", str, "versions[].source_ref.")
        elif kind == "run_artifact":
            need(ref, "path", str, "versions[].source_ref.")
            if ref.get("form") not in ("runs", "artifact_uri") or not v["run_id"]:
                raise BundleError(path, f"version {number}: a run_artifact source needs a "
                                        "run_id and a form of 'runs' or 'artifact_uri'")
        elif kind != "external":
            raise BundleError(path, f"version {number}: source_ref kind {kind!r} is unknown")


# Import ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportOptions:
    """How versions arrive. A whole-model import keeps numbers, stages and aliases and
    brings an existing target model up to date; copy-model-version appends one version."""

    source_tags: bool = False
    stage_to_alias: dict[str, str] = field(default_factory=dict)
    keep_numbers: bool = True
    copy_stages: bool = True
    copy_aliases: bool = True
    update_existing: bool = True
    extra_aliases: tuple[str, ...] = ()
    extra_version_tags: dict[str, str] = field(default_factory=dict)


def _present(existing: list[ModelVersion], v: dict, target: tuple[str, str | None, str | None],
             options: ImportOptions) -> ModelVersion | None:
    """The target version that already is the import of ``v`` (taken out of ``existing``):
    it points at the same migrated run or logged model (``target``), and with
    ``keep_numbers`` has the source number. The source string names the migrated object's
    new id, so it is a reliable key."""
    source, run_id, _ = target
    for candidate in existing:
        if (candidate.source == source and (candidate.run_id or None) == run_id
                and (not options.keep_numbers or str(candidate.version) == v["version"])):
            existing.remove(candidate)
            return candidate
    return None


def _dependencies_on_target(v: dict, idmap: IdMap) -> bool:
    """Whether the version's run and logged model (if it has them) are on the target."""
    ref = v["source_ref"]
    return not ((v["run_id"] and idmap.get("runs", v["run_id"]) is None) or (
        ref["kind"] == "logged_model" and idmap.get("logged_models", ref["model_id"]) is None))


def _delete_stale_pending(dst: Endpoint, existing: list[ModelVersion], name: str, *,
                          below: int | None = None) -> None:
    """Delete what an interrupted import left pending and nothing matched: placeholders
    for gaps. Before a version is created only those numbered ``below`` it go (a later
    unfinished version is still to be recognised); at the end, all that remain."""
    for candidate in [c for c in existing if lineage.PENDING in (c.tags or {})
                      and (below is None or int(c.version) < below)]:
        dst.client.delete_model_version(name, candidate.version)
        existing.remove(candidate)


def _out_of_date(doc: dict, v: dict, present: ModelVersion,
                 options: ImportOptions) -> list[str]:
    """What of a version found on the target differs from its source: tags, description,
    stage, or the pending marker of an import that was interrupted."""
    changed = [f"tag {key}" for key, value in _version_tags(doc, v, options).items()
               if (present.tags or {}).get(key) != value]
    if (present.description or "") != v["description"]:
        changed.append("description")
    if options.copy_stages and (present.current_stage or NO_STAGE) != v["current_stage"]:
        changed.append("stage")
    if lineage.PENDING in (present.tags or {}):
        changed.append("pending marker")
    return changed


def _bring_up_to_date(dst: Endpoint, doc: dict, v: dict, present: ModelVersion,
                      options: ImportOptions) -> None:
    name, number = present.name, str(present.version)
    for key, value in _version_tags(doc, v, options).items():
        if (present.tags or {}).get(key) != value:
            dst.registry.set_model_version_tag(name, number, ModelVersionTag(key, value))
    if (present.description or "") != v["description"]:
        dst.registry.update_model_version(name, number, v["description"])
    if options.copy_stages and (present.current_stage or NO_STAGE) != v["current_stage"]:
        _set_stage(dst, name, number, v["current_stage"])
    if lineage.PENDING in (present.tags or {}):
        dst.registry.delete_model_version_tag(name, number, lineage.PENDING)


def _set_stage(dst: Endpoint, name: str, version: str, stage: str) -> None:
    """MLflow 3 deprecates stages and offers nothing in their place, but a migration must
    carry them: set through the registry's store, which neither warns (the client's call
    emits a FutureWarning) nor asks first whether the model is a prompt."""
    dst.registry.transition_model_version_stage(name, version, stage, False)


def _version_tags(doc: dict, v: dict, options: ImportOptions) -> dict[str, str]:
    tags = {**lineage.without_import_marks(v["tags"]), **options.extra_version_tags}
    if options.source_tags:
        tags.update(lineage.model_version_source_tags(doc["name"], v))
    return tags


def _model_tags(doc: dict, options: ImportOptions) -> dict[str, str]:
    tags = dict(doc["tags"])
    if options.source_tags:
        tags.update(lineage.registered_model_source_tags(doc))
    return tags


def target_source(dst: Endpoint, v: dict, idmap: IdMap, run_uris: dict[str, str],
                  warn: Callable[[str], None]) -> tuple[str, str | None, str | None]:
    """The (source, run_id, model_id) of the target version: pointing at the migrated
    logged model or run, never at source storage (except for an external source)."""
    run_id = idmap.get("runs", v["run_id"])
    if v["run_id"] and run_id is None:
        raise EximError(f"its run {v['run_id']} is not part of this import")
    ref = v["source_ref"]
    if ref["kind"] == "logged_model":
        model_id = idmap.get("logged_models", ref["model_id"])
        if model_id is None:
            missing = dst.lacks("logged_models", "target")
            raise EximError(f"its logged model {ref['model_id']} " + (
                f"cannot arrive: {missing}" if missing else "is not part of this import"))
        return f"models:/{model_id}", run_id, model_id
    if ref["kind"] == "run_artifact":
        path = ref["path"]
        if ref["form"] == "runs":
            return f"runs:/{run_id}" + (f"/{path}" if path else ""), run_id, None
        if run_id not in run_uris:
            run_uris[run_id] = dst.client.get_run(run_id).info.artifact_uri
        return run_uris[run_id].rstrip("/") + (f"/{path}" if path else ""), run_id, None
    warn(f"source {v['source']!r} is outside the migrated runs and logged models; "
         "it is kept as it is")
    return v["source"], run_id, None


def _import_version(dst: Endpoint, doc: dict, v: dict, name: str,
                    target: tuple[str, str | None, str | None], *, options: ImportOptions,
                    outcome: Outcome, known: int | None = None) -> str:
    """Create the version; it is tagged pending until its stage is set, and every version
    created below the wanted number is a placeholder, deleted at once. ``known``: the
    number up to which every version of the model is this import's own (the last it
    created in a model it created), if any."""
    source, run_id, model_id = target
    tags = _version_tags(doc, v, options)
    keep_number = options.keep_numbers
    wanted = int(v["version"])
    placeholders: list[str] = []

    def create() -> ModelVersion:
        nonlocal known
        nonce = uuid.uuid4().hex  # the pending marker's value: this create's, and a resend's
        created = create_model_version(
            dst, name, source, run_id=run_id, tags={**tags, lineage.PENDING: nonce},
            run_link=v.get("run_link"), description=v["description"] or None,
            model_id=model_id)
        kept, resent = (
            (created, []) if known is not None and int(created.version) == known + 1
            else _one_of_resent(dst, name, created, nonce, wanted if keep_number else 0))
        placeholders.extend(resent)
        known = None if known is None else int(kept.version)
        return kept

    created = create()
    while keep_number and int(created.version) < wanted:
        dst.client.delete_model_version(name, created.version)  # a placeholder for a gap
        placeholders.append(str(created.version))
        created = create()
    if placeholders and model_id:
        _forget_registrations(dst, model_id, name, placeholders)
    if keep_number and int(created.version) != wanted:
        outcome.warn(f"arrived as version {created.version}: the target model already had "
                     f"version {wanted} or later")
    if options.copy_stages and v["current_stage"] != NO_STAGE:
        _set_stage(dst, name, created.version, v["current_stage"])
    dst.registry.delete_model_version_tag(name, created.version, lineage.PENDING)
    return str(created.version)


def _one_of_resent(dst: Endpoint, name: str, created: ModelVersion, nonce: str,
                   floor: int) -> tuple[ModelVersion, list[str]]:
    """The one version kept of a create MLflow may have sent more than once, and the
    numbers of the others, deleted. MLflow sends a request again when its answer was lost
    (a dropped connection, a timeout; see MLFLOW_HTTP_REQUEST_MAX_RETRIES), and the server
    may have created the version each time: the copies carry the same pending marker,
    numbered just below the one the last answer gave. The first numbered at least
    ``floor`` (the wanted number, when numbers are kept) is kept, else the last. (Where the
    number just below is one this import made itself, there is no copy to look for.)"""
    copies = [created]
    while int(copies[0].version) > 1:
        try:
            below = get_version(dst, name, str(int(copies[0].version) - 1))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            break  # deleted (a placeholder), or never there
        if (below.tags or {}).get(lineage.PENDING) != nonce:
            break
        copies.insert(0, below)
    kept = next((c for c in copies if int(c.version) >= floor), copies[-1])
    resent = [str(c.version) for c in copies if c is not kept]
    for number in resent:
        dst.client.delete_model_version(name, number)
    return kept, resent


def create_model_version(dst: Endpoint, name: str, source: str, *, run_id: str | None,
                         model_id: str | None, **fields) -> ModelVersion:
    """Create a version as MLflow does, also in an embedded store. There MLflow's registry
    resolves a ``models:/m-…`` source, and a ``model_id`` without a run, through the
    process-wide tracking URI (``MlflowClient()``), not through the store it writes to:
    unless MLFLOW_TRACKING_URI names that store, the logged model is "not found" (and
    ``./mlflow.db`` is created in passing). So the version is created from what that
    lookup would have given (the logged model's artifact location and source run), and
    its source is then set to ``models:/m-…`` in the same database."""
    if dst.is_http or not model_id:
        return dst.client.create_model_version(name, source, run_id=run_id, model_id=model_id,
                                               **fields)
    model = dst.client.get_logged_model(model_id)
    created = dst.client.create_model_version(name, model.artifact_location,
                                              run_id=run_id or model.source_run_id, **fields)
    store = dst.client._get_registry_client().store
    try:
        writing = store.ManagedSessionMaker(read_only=False)
    except TypeError:  # MLflow before read-only sessions: every session writes
        writing = store.ManagedSessionMaker()
    with writing as session:
        store._get_sql_model_version(session, name, created.version).source = source
    return dst.client.get_model_version(name, str(created.version))


def _forget_registrations(dst: Endpoint, model_id: str, name: str,
                          numbers: list[str]) -> None:
    """Drop deleted placeholder versions from the logged model's ``mlflow.modelVersions``
    tag, which the server appended them to and does not clean up."""
    tags = dst.client.get_logged_model(model_id).tags or {}
    try:
        entries = json.loads(tags.get(MODEL_VERSIONS_TAG, "[]"))
    except json.JSONDecodeError:
        return
    kept = [e for e in entries
            if not (e.get("name") == name and str(e.get("version")) in numbers)]
    if kept != entries:
        dst.client.set_logged_model_tags(model_id, {MODEL_VERSIONS_TAG: json.dumps(kept)})


def _set_aliases(dst: Endpoint, doc: dict, name: str, numbers: dict[str, str],
                 options: ImportOptions, outcome: Outcome) -> None:
    aliases = dict(doc["aliases"]) if options.copy_aliases else {}
    aliases = {a: v for a, v in aliases.items() if v in numbers or options.keep_numbers}
    for alias in options.extra_aliases:
        for version in numbers:
            aliases[alias] = version
    for stage, alias in options.stage_to_alias.items():
        in_stage = [v["version"] for v in doc["versions"]
                    if v["current_stage"].lower() == stage.lower() and v["version"] in numbers]
        if len(in_stage) > 1:
            outcome.warn(f"versions {', '.join(in_stage)} are all in stage {stage}; alias "
                         f"{alias!r} points at the newest")
        if in_stage:
            aliases[alias] = max(in_stage, key=int)
    for alias, version in sorted(aliases.items()):
        if version not in numbers:
            outcome.warn(f"alias {alias!r} not set: version {version} did not arrive")
            continue
        dst.registry.set_registered_model_alias(name, alias, numbers[version])


# Recognising a copy ---------------------------------------------------------------------

def fingerprint(endpoint: Endpoint, version: ModelVersion) -> tuple:
    """What a copied version shares with its original: description, user tags, the run's
    name and start time, and the model it serves (a logged model's name, type and params,
    or the path inside the run's artifacts). Ids, numbers and times all differ."""
    run = endpoint.client.get_run(version.run_id) if version.run_id else None
    ref = source_ref(version, run.info.artifact_uri if run else None)
    served = ref.get("path") if ref["kind"] == "run_artifact" else version.source
    if ref["kind"] == "logged_model":
        model = endpoint.client.get_logged_model(ref["model_id"])
        served = (model.name, model.model_type, tuple(sorted((model.params or {}).items())))
    tags = {k: v for k, v in (version.tags or {}).items() if not lineage.is_lineage_tag(k)}
    return (version.description or "", tuple(sorted(tags.items())),
            (run.info.run_name, run.info.start_time) if run else None, ref["kind"], served)


# The kind -------------------------------------------------------------------------------

VERSIONS = "model_versions"


def _plan(ctx: ImportContext) -> list[Step]:
    """Each model, created or (found by name) brought up to date, with a step per version:
    a version already on the target (see :func:`_present`) is skipped or brought up to
    date; a version whose run or logged model is still to be created is created."""
    if ctx.models is None:
        return []
    steps = []
    for source_name in ctx.source_ids(NAME):
        doc = ctx.bundle.documents[NAME][source_name]
        name = ctx.model_names.get(source_name, source_name)
        step = Step(NAME, source_name, name, CREATE, "would be created", target_id=name)
        with planning(step):
            _plan_model(ctx, doc, step)
            ctx.idmap.add(NAME, source_name, name)
        if step.error:
            reason = "its registered model could not be imported"
            step.parts = [Step(VERSIONS, f"{source_name}/{v['version']}", name, CREATE,
                               error=reason) for v in doc["versions"]]
        steps.append(step)
    return steps


def _refuse_prompt(dst: Endpoint, existing: RegisteredModel) -> None:
    """A registered model of the target that is a prompt is no model to import into."""
    if is_prompt(existing):
        raise EximError(f"{existing.name!r} is a prompt on {dst.display_uri}, not a model")


def _plan_model(ctx: ImportContext, doc: dict, step: Step) -> None:
    options: ImportOptions = ctx.models
    existing = None if ctx.empty_target else _get_or_none(ctx.dst, step.name)
    if existing is not None:
        _refuse_prompt(ctx.dst, existing)
        changed = [] if not options.update_existing else [
            f"tag {key}" for key, value in _model_tags(doc, options).items()
            if existing.tags.get(key) != value] + (
            ["description"] if (existing.description or "") != doc["description"] else [])
        step.already_present(changed)
    versions_on_target = versions(ctx.dst, step.name) if existing is not None else []
    for v in doc["versions"]:
        part = Step(VERSIONS, f"{doc['name']}/{v['version']}", step.name, CREATE,
                    "would be created")
        with planning(part):
            _plan_version(ctx, doc, v, part, versions_on_target)
        step.parts.append(part)
    step.present = versions_on_target  # what no version matched: stale placeholders


def _plan_version(ctx: ImportContext, doc: dict, v: dict, part: Step,
                  versions_on_target: list[ModelVersion]) -> None:
    missing = [f"its {what} {object_id} is not part of this import"
               for what, kind, object_id in _dependencies(v)
               if not ctx.takes(kind, object_id)]
    if missing:
        raise EximError(missing[0])
    for what, kind, object_id in _dependencies(v):
        needed = ctx.planned_step(kind, object_id)
        if needed is not None and needed.error:
            raise EximError(f"its {what} {object_id} cannot arrive: {needed.error}")
    if not versions_on_target or not _dependencies_on_target(v, ctx.idmap):
        return  # its run or logged model is still to be created: so is the version
    target = target_source(ctx.dst, v, ctx.idmap, ctx.run_artifact_uris, part.warnings.append)
    present = _present(versions_on_target, v, target, ctx.models)
    if present is None:
        return
    changed = _out_of_date(doc, v, present, ctx.models)
    part.action, part.present = (UPDATE if changed else SKIP), present
    part.target_id = f"{present.name}/{present.version}"
    part.reason = f"already present as {present.name} version {present.version}" + (
        f"; {', '.join(changed)} brought up to date" if changed else "")
    ctx.idmap.add(VERSIONS, part.source_id, part.target_id)


def _dependencies(v: dict) -> list[tuple[str, str, str]]:
    """(what, kind, source id) of the run and logged model a version points at."""
    found = [("run", "runs", v["run_id"])] if v["run_id"] else []
    if v["source_ref"]["kind"] == "logged_model":
        found.append(("logged model", "logged_models", v["source_ref"]["model_id"]))
    return found


def _get_or_none(dst: Endpoint, name: str) -> RegisteredModel | None:
    try:
        found = dst.client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - RESOURCE_DOES_NOT_EXIST
        return None
    return _exactly(dst, found, name)


def _exactly(dst: Endpoint, found: RegisteredModel, name: str) -> RegisteredModel:
    return names.exactly(found, name, "registered model", dst.display_uri, "--model-rename")


def _apply(ctx: ImportContext, steps: list[Step]) -> list[Task]:
    """Each model once the runs and logged models of all its versions are done (its
    versions go in order, one after another); a version whose run or logged model failed
    fails with that reason, the others arrive."""
    return [Task(step, lambda step=step: _apply_model(ctx, step),
                 after=[(kind, object_id) for v in ctx.bundle.documents[NAME][step.source_id][
                     "versions"] for _, kind, object_id in _dependencies(v)])
            for step in steps]


def _created(dst: Endpoint, name: str, tags: dict, description: str) -> bool:
    """Create the registered model; False when another job created it first."""
    try:
        dst.client.create_registered_model(name, tags=tags or None,
                                           description=description or None)
        return True
    except Exception as exc:
        if "RESOURCE_ALREADY_EXISTS" in str(exc):
            return False
        raise


def _apply_model(ctx: ImportContext, step: Step) -> None:
    """The model, then its versions in order, then its aliases. With ``keep_numbers`` each
    version gets its source number: numbers left free by deleted source versions are used
    up by placeholder versions that are deleted at once. A version an interrupted import
    left tagged pending that matches no source version is one of its placeholders, and is
    deleted."""
    options: ImportOptions = ctx.models
    doc = ctx.bundle.documents[NAME][step.source_id]
    name = step.name
    known: int | None = None  # in a model it created, each version is its own
    with ctx.track(step) as outcome:
        tags = _model_tags(doc, options)
        update = step.action == UPDATE
        if step.action == CREATE:  # another job may have created it since the plan
            update = not _created(ctx.dst, name, tags, doc["description"])
            known = None if update else 0
        if update:
            existing = _exactly(ctx.dst, ctx.dst.client.get_registered_model(name), name)
            _refuse_prompt(ctx.dst, existing)  # made a prompt since the plan?
            for key, value in tags.items():
                if existing.tags.get(key) != value:
                    ctx.dst.registry.set_registered_model_tag(name, RegisteredModelTag(key,
                                                                                      value))
            if (existing.description or "") != doc["description"]:
                ctx.dst.registry.update_registered_model(name, doc["description"])
    if outcome.status == FAILED:
        for part in step.parts:
            part.error = part.error or "its registered model could not be imported"
    leftovers: list[ModelVersion] = step.present or []
    numbers: dict[str, str] = {}
    by_number = {v["version"]: v for v in doc["versions"]}
    for part in step.parts:
        v = by_number[part.source_id.rpartition("/")[2]]
        part.error = part.error or ctx.unmet([(kind, object_id)
                                              for _, kind, object_id in _dependencies(v)])
        if part.error:
            ctx.fail(part)
            continue
        with ctx.track(part) as version_outcome:
            if part.action in (SKIP, UPDATE):
                if part.action == UPDATE:
                    _bring_up_to_date(ctx.dst, doc, v, part.present, options)
                created = str(part.present.version)
            else:
                target = target_source(ctx.dst, v, ctx.idmap, ctx.run_artifact_uris,
                                       version_outcome.warn)
                _delete_stale_pending(ctx.dst, leftovers, name,
                                      below=int(v["version"]) if options.keep_numbers else 0)
                created = _import_version(ctx.dst, doc, v, name, target, options=options,
                                          outcome=version_outcome, known=known)
                known = None if known is None else int(created)
            numbers[v["version"]] = created
            ctx.idmap.add(VERSIONS, part.source_id, f"{name}/{created}")
            version_outcome.target_id = f"{name}/{created}"
    if outcome.status == FAILED:
        return
    try:
        _delete_stale_pending(ctx.dst, leftovers, name)
        _set_aliases(ctx.dst, doc, name, numbers, options, outcome)
    except Exception as exc:  # noqa: BLE001 - reported on the model
        outcome.status = FAILED
        outcome.reason = f"versions imported, but aliases could not be set: {one_line(exc)}"


@dataclass
class ExportItem:
    """A registered model as an export plans it: the versions chosen, each with where its
    files are (``source_ref``) and the (kind, id) pairs that must be written with it."""

    model: RegisteredModel
    versions: list[tuple[ModelVersion, dict, list[tuple[str, str]]]]


def _export(ctx: ExportContext, name: str, item: ExportItem, directory: Path,
            outcome: Outcome) -> None:
    """Write the model with the versions whose run and logged model were written; a version
    whose dependency failed is reported failed and left out."""
    written = []
    for version, ref, needs in item.versions:
        key = f"{name}/{version.version}"
        missing = [f"{singular(kind)} {object_id}"
                   for kind, object_id in needs if not ctx.writer.has(kind, object_id)]
        if missing:
            ctx.report.fail(VERSIONS, key, f"its {missing[0]} could not be exported", name)
        else:
            written.append((key, version_doc(version, ref)))
    try:
        export(to_doc(item.model, [doc for _, doc in written]), directory)
    except Exception:
        for key, _ in written:
            ctx.report.fail(VERSIONS, key, "its registered model could not be exported", name)
        raise
    for key, _ in written:
        ctx.report.add(Outcome(VERSIONS, key, name))


NAME = "registered_models"
KIND = Kind(
    name=NAME,
    section=Section(NAME, REGISTERED_MODEL_FILE, validate),
    depends_on=("runs", "logged_models"),
    parts=(VERSIONS,),
    export=_export,
    inventory=lambda item: {"name": item.model.name},
    export_after=lambda item: [need for _, _, needs in item.versions for need in needs],
    label=lambda item: item.model.name,
    rewrite_on_resume=True,  # its versions' outcomes are reported as it is written
    plan=_plan,
    apply=_apply,
)
