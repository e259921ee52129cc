"""Shards: one bulk export, import or migration split over N processes (``--shard I/N``),
say the pods of a Kubernetes Indexed Job, so that together they take the whole selection
and no object twice.

What must arrive together stays together: an experiment with its runs, logged models,
traces and scorers (and with the experiment of a run's parent); a registered model with
every version, and so with the experiments of the runs and logged models behind them; a
prompt or an evaluation dataset with the experiments it is linked to. These groups are the
connected parts of a graph whose nodes are the objects of the selection (:func:`split`).
Each part goes to the shard that the SHA-256 of its key picks, the key being its smallest
experiment id, else registered model name, prompt name or dataset id, all as at the
SOURCE: a source id never changes, and the bundle keeps it, so an export with ``--shard``
and an import of a whole bundle with the same ``--shard`` take the same part. A registered
model used by every experiment makes one part of them all: shards balance as well as the
parts do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mlflow_exim.bundle import Bundle
from mlflow_exim.entities import evaluation_dataset as dataset_entity
from mlflow_exim.entities import experiment as experiment_entity
from mlflow_exim.entities import logged_model as logged_model_entity
from mlflow_exim.entities import prompt as prompt_entity
from mlflow_exim.entities import registered_model as registered_model_entity
from mlflow_exim.entities import run as run_entity
from mlflow_exim.entities import scorer as scorer_entity
from mlflow_exim.entities import trace as trace_entity
from mlflow_exim.errors import EximError

EXPERIMENTS, RUNS = experiment_entity.NAME, run_entity.NAME
LOGGED_MODELS, REGISTERED_MODELS = logged_model_entity.NAME, registered_model_entity.NAME
PROMPTS, DATASETS, SCORERS = prompt_entity.NAME, dataset_entity.NAME, scorer_entity.NAME
TRACES = trace_entity.NAME

# The kinds that name a part, in the order its key is chosen from.
KEY_KINDS = (EXPERIMENTS, REGISTERED_MODELS, PROMPTS, DATASETS)

Node = tuple[str, str]  # (kind, source id)


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based: ``--shard 1/4`` to ``--shard 4/4``)."""

    index: int
    count: int

    def __post_init__(self):
        if not 1 <= self.index <= self.count:
            raise EximError(f"shard {self.index}/{self.count}: I/N needs 1 <= I <= N")

    @classmethod
    def of(cls, value: Shard | str | None) -> Shard | None:
        """A shard from ``I/N`` text (``2/4``), a Shard, or None for no split."""
        if value is None or isinstance(value, Shard):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(value))
        if not match:
            raise EximError(f"shard {value!r} is not I/N, e.g. 2/4 (I counts from 1)")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def takes(self, key: str) -> bool:
        """Whether the part of key ``key`` falls into this shard."""
        return bucket(key, self.count) == self.index - 1


def bucket(key: str, count: int) -> int:
    """0 to ``count - 1``: the same for the same key in every process and on every host
    (Python's own ``hash`` of a string changes from process to process)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % count


def split(nodes: Iterable[Node], edges: Iterable[tuple[Node, Node]],
          shard: Shard) -> dict[str, set[str]]:
    """Per kind of the nodes, the ids of those in ``shard`` (maybe none): the connected
    parts (through ``edges``; an edge to a node not in ``nodes`` is ignored) whose key it
    takes."""
    nodes = list(nodes)
    taken: dict[str, set[str]] = {kind: set() for kind, _ in nodes}
    for members in parts(nodes, edges):
        if shard.takes(part_key(members)):
            for kind, object_id in members:
                taken[kind].add(object_id)
    return taken


def parts(nodes: Iterable[Node], edges: Iterable[tuple[Node, Node]]) -> list[list[Node]]:
    """The connected parts of the graph (an edge to a node not in ``nodes`` is ignored),
    each sorted, in the order of their keys."""
    parent: dict[Node, Node] = {node: node for node in nodes}

    def root(node: Node) -> Node:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for one, other in edges:
        if one in parent and other in parent:
            parent[root(one)] = root(other)
    found: dict[Node, list[Node]] = {}
    for node in parent:
        found.setdefault(root(node), []).append(node)
    return sorted((sorted(members) for members in found.values()), key=part_key)


def chunks(groups: list[list[Node]], weight: Callable[[Node], int],
           count: int) -> list[list[Node]]:
    """The parts ``groups`` packed into at most ``count`` chunks of about equal weight (the
    sum of their nodes' ``weight``), a part never cut: the heaviest part first into the
    lightest chunk, so that no chunk outweighs another by more than the heaviest part.
    The chunks come lightest first (the first is exported and imported soonest), each
    sorted; the same parts and weights always give the same chunks."""
    bins: list[tuple[int, list[Node]]] = [(0, []) for _ in range(max(1, count))]
    for members in sorted(groups, key=lambda g: (-sum(map(weight, g)), part_key(g))):
        lightest = min(range(len(bins)), key=lambda i: (bins[i][0], i))
        load, held = bins[lightest]
        bins[lightest] = (load + sum(map(weight, members)), held + members)
    return [sorted(held) for _, held in sorted((b for b in bins if b[1]),
                                               key=lambda b: (b[0], min(b[1])))]


def part_key(members: list[Node]) -> str:
    """The key of a part: ``experiments:<id>`` of its smallest experiment id, else its
    smallest registered model, prompt or dataset (else its smallest node)."""
    def rank(node: Node) -> tuple:
        kind, object_id = node
        order = KEY_KINDS.index(kind) if kind in KEY_KINDS else len(KEY_KINDS)
        return order, len(object_id), object_id

    kind, object_id = min(members, key=rank)
    return f"{kind}:{object_id}"


def bundle_graph(bundle: Bundle) -> tuple[list[Node], list[tuple[Node, Node]]]:
    """The objects of a bundle and what must stay together (see the module text)."""
    docs, facts = bundle.documents, bundle.facts
    nodes = [(kind, object_id) for kind, objects in docs.items() for object_id in objects]
    edges = [((kind, object_id), (EXPERIMENTS, fact["experiment_id"]))
             for kind in (RUNS, LOGGED_MODELS, TRACES)
             for object_id, fact in facts.get(kind, {}).items()]
    edges += [((RUNS, run_id), (RUNS, fact["parent"]))
              for run_id, fact in facts.get(RUNS, {}).items() if fact["parent"]]
    edges += [((SCORERS, i), (EXPERIMENTS, d["experiment_id"]))
              for i, d in docs.get(SCORERS, {}).items()]
    for model_id, doc in docs.get(LOGGED_MODELS, {}).items():
        edges += [((LOGGED_MODELS, model_id), (RUNS, run_id))
                  for run_id in model_runs(doc["source_run_id"], doc["metrics"])]
    for name, doc in docs.get(REGISTERED_MODELS, {}).items():
        for v in doc["versions"]:
            edges += [((REGISTERED_MODELS, name), need) for need in version_needs(
                v["run_id"], v["source_ref"])]
    edges += linked(PROMPTS, {name: prompt_entity.linked_experiments_of(doc)
                              for name, doc in docs.get(PROMPTS, {}).items()})
    edges += linked(DATASETS, {i: doc["experiment_ids"]
                               for i, doc in docs.get(DATASETS, {}).items()})
    return nodes, edges


def model_runs(source_run_id: str | None, metrics: list) -> set[str]:
    """The runs a logged model needs: its source run and the runs of its metrics (metric
    entities, or their documents)."""
    runs = {m.get("run_id") if isinstance(m, dict) else m.run_id for m in metrics or []}
    return {run_id for run_id in {source_run_id, *runs} if run_id}


def version_needs(run_id: str | None, source_ref: dict) -> list[Node]:
    """The run and logged model behind a model version."""
    needs = [(RUNS, run_id)] if run_id else []
    if source_ref["kind"] == "logged_model":
        needs.append((LOGGED_MODELS, source_ref["model_id"]))
    return needs


def linked(kind: str, experiments_of: dict[str, list[str]]) -> list[tuple[Node, Node]]:
    """Edges from GenAI objects to the experiments they are linked to."""
    return [((kind, object_id), (EXPERIMENTS, experiment_id))
            for object_id, experiment_ids in experiments_of.items()
            for experiment_id in experiment_ids]


def narrow(selected: dict[str, set[str]], taken: dict[str, set[str]]) -> dict[str, set[str]]:
    """An import's ``selected`` (per kind; a kind not in it: all) narrowed to one shard's
    ``taken`` (which lists every kind the bundle holds)."""
    return {kind: ids & selected.get(kind, ids) for kind, ids in taken.items()}
