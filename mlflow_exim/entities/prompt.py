"""Prompts of the prompt registry: the bundle document, export and import.

A prompt is stored as a registered model tagged ``mlflow.prompt.is_prompt`` whose versions
hold the template and its settings in tags (``mlflow.prompt.text``, ``_mlflow_prompt_type``,
``_mlflow_prompt_response_format``, ``_mlflow_prompt_model_config``) and the commit message
as their description. They are read and written through the registry store, tags and all,
so that nothing MLflow's prompt API would add or drop on the way (``load_prompt`` links a
prompt to the active experiment: an export never calls it). ``prompt.json`` holds the
prompt and every visible version; on import each version gets its source number, numbers
left free by deleted source versions being used up by placeholders deleted at once, as
for registered models.

Two tags name objects whose ids change and are remapped: the prompt's
``_mlflow_experiment_ids`` (``,1,4,``: the experiments it is linked to) and a version's
``mlflow.prompt.associatedRunIds`` (a comma list of run ids). A run's own
``mlflow.linkedPrompts`` tag names prompts by name and number, which both survive.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.entities.model_registry import (
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelTag,
)

from mlflow_exim import lineage
from mlflow_exim.bundle.format import Section
from mlflow_exim.bundle.jsonio import write_json
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import links, names
from mlflow_exim.entities.registered_model import PROMPT_TAG
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

PROMPT_FILE = "prompt.json"
EXPERIMENT_IDS_TAG = "_mlflow_experiment_ids"
ASSOCIATED_RUNS_TAG = "mlflow.prompt.associatedRunIds"
_PROMPT_FILTER = f"tags.`{PROMPT_TAG}` = 'true'"


# Reading the source ---------------------------------------------------------------------

def registry(endpoint: Endpoint):
    """The registry store: it reads and writes prompts as registered models with every
    tag, where the client hides them or adds its own state."""
    return endpoint.client._get_registry_client().store


def all_prompts(src: Endpoint) -> list[RegisteredModel]:
    """Every prompt of the registry (linked to an experiment or not)."""
    return list(paged(registry(src).search_registered_models, _PROMPT_FILTER, max_results=1000))


def linked_experiments(prompt: RegisteredModel) -> list[str]:
    """The ids of the experiments a prompt is linked to (its ``_mlflow_experiment_ids``)."""
    return linked_experiments_of({"tags": prompt.tags or {}})


def linked_experiments_of(doc: dict) -> list[str]:
    """The ids of the experiments a prompt's document is linked to."""
    return [i for i in doc["tags"].get(EXPERIMENT_IDS_TAG, "").split(",") if i]


def get(endpoint: Endpoint, name: str) -> RegisteredModel | None:
    """The prompt ``name``, or None. A registered model of that name that is not a prompt
    is an error: the registry does not show the prompt tag on what it reads back, only
    a search by it tells the two apart."""
    found = registry(endpoint).search_registered_models(
        f"name = '{name}' AND {_PROMPT_FILTER}", max_results=10)
    for prompt in found:
        if prompt.name == name:
            return prompt
    try:
        other = registry(endpoint).get_registered_model(name)
    except Exception:  # noqa: BLE001 - RESOURCE_DOES_NOT_EXIST
        return None
    names.exactly(other, name, "prompt", endpoint.display_uri)
    raise EximError(f"{name!r} is a registered model on {endpoint.display_uri}, not a prompt")


def versions(endpoint: Endpoint, name: str) -> list[ModelVersion]:
    """Every visible version of the prompt ``name``, in version order (a prompt's name
    holds no quote: MLflow allows letters, digits, ``_``, ``-`` and ``.``)."""
    found = paged(registry(endpoint).search_model_versions,
                  f"name = '{name}' AND {_PROMPT_FILTER}", max_results=10000)
    return sorted((v for v in found if v.name == name), key=lambda v: int(v.version))


# The document ---------------------------------------------------------------------------

def version_doc(version: ModelVersion) -> dict:
    return {
        "version": str(version.version),
        "description": version.description or "",
        "tags": dict(version.tags or {}),
        "source": version.source,
        "aliases": sorted(version.aliases or []),
        "creation_timestamp": version.creation_timestamp,
        "last_updated_timestamp": version.last_updated_timestamp,
    }


def to_doc(prompt: RegisteredModel, prompt_versions: list[ModelVersion],
           experiment_names: dict[str, str]) -> dict:
    return {
        "name": prompt.name,
        "description": prompt.description or "",
        "tags": {**(prompt.tags or {}), PROMPT_TAG: "true"},  # read back without it
        "aliases": {alias: str(v) for alias, v in (prompt.aliases or {}).items()},
        "experiment_names": experiment_names,
        "creation_timestamp": prompt.creation_timestamp,
        "last_updated_timestamp": prompt.last_updated_timestamp,
        "versions": [version_doc(v) for v in prompt_versions],
    }


def validate(doc, path: Path) -> None:
    def strings(value, what: str) -> None:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise BundleError(path, f"{what} must be an object of strings")

    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise BundleError(path, "must hold a JSON object with a string 'name'")
    if not isinstance(doc.get("description"), str):
        raise BundleError(path, "field 'description' is missing or not a string")
    strings(doc.get("tags"), "'tags'")
    strings(doc.get("aliases"), "'aliases'")
    if str(doc["tags"].get(PROMPT_TAG, "")).lower() != "true":
        raise BundleError(path, f"is not a prompt (no tag {PROMPT_TAG})")
    if not isinstance(doc.get("versions"), list):
        raise BundleError(path, "field 'versions' is missing or not a list")
    for v in doc["versions"]:
        number = v.get("version") if isinstance(v, dict) else None
        if not isinstance(number, str) or not number.isdigit():
            raise BundleError(path, f"version {number!r} is not a number")
        strings(v.get("tags"), f"version {number}: 'tags'")
        if not isinstance(v.get("description"), str) or not isinstance(v.get("source"), str):
            raise BundleError(path, f"version {number}: 'description' and 'source' must be "
                                    "strings")


def _export(ctx: ExportContext, name: str, item: RegisteredModel, directory: Path,
            outcome: Outcome) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / PROMPT_FILE, to_doc(item, versions(ctx.src, name),
                                               links.experiment_names(ctx.src,
                                                                      linked_experiments(item))))


# Remapping ------------------------------------------------------------------------------

def run_links(value: str, idmap: IdMap, warn) -> str:
    """A comma list of source run ids as target run ids; a run not part of the import is
    dropped, with a warning."""
    kept = []
    for source_id in (i.strip() for i in value.split(",") if i.strip()):
        target_id = idmap.get("runs", source_id)
        if target_id is None:
            warn(f"its link to run {source_id} is dropped: that run is not part of this import")
        else:
            kept.append(target_id)
    return ",".join(kept)


def target_tags(ctx: ImportContext, doc: dict, warn) -> dict[str, str]:
    """The prompt's tags with its experiment links (``,1,4,``) naming target experiments
    (see :func:`links.target_experiments`)."""
    tags = lineage.without_import_marks(doc["tags"])
    if EXPERIMENT_IDS_TAG in tags:
        kept = links.target_experiments(ctx, linked_experiments_of(doc),
                                        doc.get("experiment_names", {}), warn)
        tags[EXPERIMENT_IDS_TAG] = f",{','.join(kept)}," if kept else ""
    return tags


def keeping_links(present: dict | None, tags: dict[str, str],
                  key: str = EXPERIMENT_IDS_TAG) -> dict[str, str]:
    """``tags`` with the links of tag ``key`` a target prompt (or, for
    ``mlflow.prompt.associatedRunIds``, version) already has kept: an import adds links,
    never removes one (a second copy under renamed experiments links both copies)."""
    present = present or {}
    if key not in tags or key not in present:
        return tags
    linked = _ids(present[key])
    linked += [i for i in _ids(tags[key]) if i not in linked]
    joined = ",".join(linked)
    if key == EXPERIMENT_IDS_TAG:  # ``,1,4,``
        joined = f",{joined}," if linked else ""
    return {**tags, key: joined}


def _ids(value: str) -> list[str]:
    return [i.strip() for i in value.split(",") if i.strip()]


def target_version_tags(v: dict, idmap: IdMap, warn) -> dict[str, str]:
    tags = lineage.without_import_marks(v["tags"])
    if ASSOCIATED_RUNS_TAG in tags:
        tags[ASSOCIATED_RUNS_TAG] = run_links(tags[ASSOCIATED_RUNS_TAG], idmap, warn)
    return tags


# Import ---------------------------------------------------------------------------------

def _quiet(_message: str) -> None:
    """Warnings of a comparison made while planning; the apply reports them."""


def _plan(ctx: ImportContext) -> list[Step]:
    """A step per prompt: created, or (found by name) brought up to date, with a step per
    version: one already there under its number is skipped or brought up to date."""
    steps = []
    for name in ctx.source_ids(NAME):
        doc = ctx.bundle.documents[NAME][name]
        step = Step(NAME, name, name, CREATE, "would be created", target_id=name)
        with planning(step):
            _plan_prompt(ctx, doc, step)
        steps.append(step)
    return steps


def _plan_prompt(ctx: ImportContext, doc: dict, step: Step) -> None:
    existing = None if ctx.empty_target else get(ctx.dst, step.name)
    present: dict[str, ModelVersion] = {}
    if existing is not None:
        present = {str(v.version): v for v in versions(ctx.dst, step.name)}
        wanted = keeping_links(existing.tags, target_tags(ctx, doc, _quiet))
        changed = [f"tag {k}" for k in _changed_tags(existing.tags, wanted)]
        if EXPERIMENT_IDS_TAG in doc["tags"] and links.to_be_created(
                ctx, linked_experiments_of(doc)):
            changed.append("links to new experiments")
        if (existing.description or "") != doc["description"]:
            changed.append("description")
        step.already_present(changed)
    ctx.idmap.add(NAME, doc["name"], step.name)
    for v in doc["versions"]:
        part = Step(VERSIONS, f"{doc['name']}/{v['version']}", step.name, CREATE,
                    "would be created", target_id=f"{step.name}/{v['version']}")
        found = present.get(v["version"])
        if found is not None:
            changed = [f"tag {k}" for k in _changed_tags(found.tags, keeping_links(
                found.tags, target_version_tags(v, ctx.idmap, _quiet), ASSOCIATED_RUNS_TAG))]
            if (found.description or "") != v["description"]:
                changed.append("description")
            if lineage.PENDING in (found.tags or {}):
                changed.append("pending marker")
            part.action, part.present = (UPDATE if changed else SKIP), found
            part.reason = f"already present as version {found.version}" + (
                f"; {', '.join(changed)} brought up to date" if changed else "")
            ctx.idmap.add(VERSIONS, part.source_id, part.target_id)
        step.parts.append(part)
    step.present = existing
    numbers = {v["version"] for v in doc["versions"]}
    step.leftovers = [number for number, found in present.items()
                      if lineage.PENDING in (found.tags or {}) and number not in numbers]


def _changed_tags(present: dict | None, wanted: dict[str, str]) -> list[str]:
    """The wanted tags a target object lacks or holds otherwise (the prompt tag, which
    only creation sets and the registry never shows, aside)."""
    present = present or {}
    return [key for key, value in wanted.items()
            if key != PROMPT_TAG or key in present if present.get(key) != value]


def _apply(ctx: ImportContext, steps: list[Step]) -> list[Task]:
    """Each prompt once the experiments it is linked to and the runs its versions name are
    done (a link to one that did not arrive is dropped, with a warning)."""
    return [Task(step, lambda step=step: _apply_prompt(ctx, step),
                 after=_linked(ctx.bundle.documents[NAME][step.source_id]))
            for step in steps]


def _linked(doc: dict) -> list[tuple[str, str]]:
    """The (kind, source id) of the experiments and runs a prompt's links name."""
    return [("experiments", i) for i in linked_experiments_of(doc)] + [
        ("runs", i) for v in doc["versions"]
        for i in _ids(v["tags"].get(ASSOCIATED_RUNS_TAG, ""))]


def _apply_prompt(ctx: ImportContext, step: Step) -> None:
    """The prompt, its versions in order (placeholders for gaps), then its aliases."""
    store = registry(ctx.dst)
    doc = ctx.bundle.documents[NAME][step.source_id]
    name = step.name
    with ctx.track(step) as outcome:
        tags = target_tags(ctx, doc, outcome.warn)
        if step.present is None:
            try:
                store.create_registered_model(
                    name, tags=[RegisteredModelTag(k, v) for k, v in tags.items()],
                    description=doc["description"] or None)
            except Exception as exc:
                if "RESOURCE_ALREADY_EXISTS" in str(exc):
                    get(ctx.dst, name)  # the name of another prompt there? then say so
                raise
        else:
            tags = keeping_links(step.present.tags, tags)
            for key in _changed_tags(step.present.tags, tags):
                store.set_registered_model_tag(name, RegisteredModelTag(key, tags[key]))
            if (step.present.description or "") != doc["description"]:
                store.update_registered_model(name, description=doc["description"])
    if outcome.status != FAILED:
        for number in step.leftovers:  # placeholders an interrupted import left
            store.delete_model_version(name, number)
    by_number = {v["version"]: v for v in doc["versions"]}
    arrived = set()
    for part in step.parts:
        if outcome.status == FAILED:
            part.error = "its prompt could not be imported"
        if part.error:
            ctx.fail(part)
            continue
        v = by_number[part.source_id.rpartition("/")[2]]
        with ctx.track(part) as version_outcome:
            _apply_version(ctx, name, v, part, version_outcome)
            arrived.add(v["version"])
            ctx.idmap.add(VERSIONS, part.source_id, part.target_id)
    if outcome.status == FAILED:
        return
    try:
        aliases = (store.get_registered_model(name).aliases or {})
        for alias, version in sorted(doc["aliases"].items()):
            if version not in arrived:
                outcome.warn(f"alias {alias!r} not set: version {version} did not arrive")
            elif str(aliases.get(alias)) != version:
                store.set_registered_model_alias(name, alias, version)
    except Exception as exc:  # noqa: BLE001 - reported on the prompt
        outcome.status = FAILED
        outcome.reason = f"versions imported, but aliases could not be set: {one_line(exc)}"


def _apply_version(ctx: ImportContext, name: str, v: dict, part: Step,
                   outcome: Outcome) -> None:
    """Create the version under its source number, or bring the one there up to date. It
    is tagged pending until complete; every version created below the wanted number is a
    placeholder for a deleted source version, deleted at once."""
    store = registry(ctx.dst)
    tags = target_version_tags(v, ctx.idmap, outcome.warn)
    present: ModelVersion | None = part.present
    if present is None:
        wanted = int(v["version"])
        while True:
            created = store.create_model_version(
                name, v["source"], tags=[ModelVersionTag(k, val) for k, val in
                                         {**tags, lineage.PENDING: "true"}.items()],
                description=v["description"] or None)
            if int(created.version) >= wanted:
                break
            store.delete_model_version(name, created.version)
        if int(created.version) != wanted:
            outcome.warn(f"arrived as version {created.version}: the target prompt already "
                         f"had version {wanted} or later")
        part.target_id = f"{name}/{created.version}"
        store.delete_model_version_tag(name, created.version, lineage.PENDING)
        return
    tags = keeping_links(present.tags, tags, ASSOCIATED_RUNS_TAG)
    for key in _changed_tags(present.tags, tags):
        store.set_model_version_tag(name, present.version, ModelVersionTag(key, tags[key]))
    if (present.description or "") != v["description"]:
        store.update_model_version(name, present.version, description=v["description"])
    if lineage.PENDING in (present.tags or {}):
        store.delete_model_version_tag(name, present.version, lineage.PENDING)


NAME = "prompts"
VERSIONS = "prompt_versions"
KIND = Kind(
    name=NAME,
    section=Section(NAME, PROMPT_FILE, validate),
    depends_on=("experiments", "runs"),
    parts=(VERSIONS,),
    export=_export,
    inventory=lambda item: {"name": item.name},
    label=lambda item: item.name,
    plan=_plan,
    apply=_apply,
)
