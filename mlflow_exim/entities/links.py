"""Links from GenAI objects (prompts, evaluation datasets) to experiments, which an export
of those objects alone does not carry: the document names each linked experiment, so that
an import finds it on the target by name when the import itself does not bring it."""

from __future__ import annotations

from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities.names import same
from mlflow_exim.kind import ImportContext

DEFAULT_EXPERIMENT = "0"  # the Default experiment: id 0 on every server


def store_lacks(exc: Exception) -> bool:
    """Whether an embedded store refused a GenAI call because it cannot hold such objects
    (a legacy file store has the methods, which raise), rather than for this call."""
    return isinstance(exc, NotImplementedError) or "not supported" in str(exc)


def experiment_names(src: Endpoint, experiment_ids: list[str]) -> dict[str, str]:
    """Source experiment id → name, for the ids that name an experiment."""
    names = {}
    for experiment_id in experiment_ids:
        try:
            names[experiment_id] = src.client.get_experiment(experiment_id).name
        except Exception:  # noqa: BLE001 - a link to an experiment since deleted for good
            continue
    return names


def target_experiments(ctx: ImportContext, experiment_ids: list[str], names: dict[str, str],
                       warn) -> list[str]:
    """The target ids of linked source experiments: the experiment this import brings, or
    else the target's experiment of the same name (the Default experiment is everywhere);
    a link to an experiment found neither way is dropped, with a warning. An experiment
    the import brings is never looked up by its source name (the import may rename it):
    while planning, one still to be created is left out (see :func:`to_be_created`)."""
    kept: list[str] = []
    for source_id in experiment_ids:
        target_id = ctx.idmap.get("experiments", source_id)
        if target_id is None and ctx.takes("experiments", source_id):
            warn(f"its link to experiment {source_id} is dropped: that experiment did not "
                 "arrive")
            continue
        if target_id is None and source_id in names and not ctx.empty_target:
            found = same(ctx.dst.client.get_experiment_by_name(names[source_id]),
                         names[source_id])
            target_id = found.experiment_id if found is not None else None
        if target_id is None and source_id == DEFAULT_EXPERIMENT:
            target_id = DEFAULT_EXPERIMENT
        if target_id is None:
            warn(f"its link to experiment {source_id}"
                 + (f" ({names[source_id]})" if source_id in names else "")
                 + " is dropped: no such experiment on the target")
        elif target_id not in kept:
            kept.append(target_id)
    return kept


def to_be_created(ctx: ImportContext, experiment_ids: list[str]) -> bool:
    """Whether this import brings one of these experiments and has yet to create it."""
    return any(ctx.takes("experiments", i) and ctx.target_experiment(i) is None
               for i in experiment_ids)
