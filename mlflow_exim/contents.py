"""A bundle's table of contents, read without any server (like ``pg_restore -l``).

It reads the manifest and every section's documents; a damaged section is reported as
incomplete with the reason instead of stopping the listing, so that a user can see what a
bundle holds before deciding to import it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mlflow_exim.bundle import Bundle
from mlflow_exim.catalog import KINDS
from mlflow_exim.endpoint import redact
from mlflow_exim.entities.experiment import NAME as EXPERIMENTS
from mlflow_exim.errors import BundleError

ARTIFACTS = "artifacts"


@dataclass
class Contents:
    """What :func:`inspect_bundle` found; ``to_dict()`` is the ``--json`` form."""

    path: str
    header: dict
    sections: dict[str, dict] = field(default_factory=dict)
    experiments: list[dict] = field(default_factory=list)
    export_failures: list[dict] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(section["complete"] for section in self.sections.values())

    def to_dict(self) -> dict:
        return {"path": self.path, **self.header, "complete": self.complete,
                "sections": self.sections, "experiments": self.experiments,
                "export_failures": self.export_failures}

    def text(self) -> str:
        h = self.header
        source = h["source"]
        lines = [f"bundle {self.path}",
                 f"  format {h['format']} version {h['format_version']}, written by "
                 f"mlflow-exim {h['tool_version']} at {h['created_at']}",
                 f"  source {source.get('tracking_uri')} (MLflow "
                 f"{source.get('mlflow_version', 'unknown')})",
                 f"  command {h['command']} {json.dumps(h['options'], sort_keys=True)}",
                 "", f"  {'section':<20}{'objects':>9}{'failed':>8}  state"]
        for name, section in self.sections.items():
            state = "complete" if section["complete"] else "INCOMPLETE: " + "; ".join(
                section["problems"])
            extra = []
            if section.get("metric_points"):
                extra.append(f"{section['metric_points']} metric points")
            if "artifact_files" in section:
                extra.append(f"{section['artifact_files']} artifact files, "
                             f"{_size(section['artifact_bytes'])}")
            lines.append(f"  {name:<20}{section['objects']:>9}{section['export_failures']:>8}  "
                         + state + (f" ({', '.join(extra)})" if extra else ""))
        if self.experiments:
            lines += ["", "  per experiment:"]
            for e in self.experiments:
                counts = ", ".join(f"{n} {kind}" for kind, n in e["objects"].items())
                lines.append(f"    {e['experiment_id']:<8} {e['name']}: {counts or 'empty'}")
        if self.export_failures:
            lines += ["", f"  export failures ({len(self.export_failures)}): these objects "
                          "are not in the bundle"]
            lines += [f"    {f.get('kind')} {f.get('source_id')}: {f.get('reason')}"
                      for f in self.export_failures]
        lines += ["", "  result: " + ("complete" if self.complete else "INCOMPLETE")]
        return "\n".join(lines)


def inspect_bundle(path: str | Path) -> Contents:
    """List the bundle at ``path``: format and tool version, source (without credentials),
    command and options, objects per kind and per experiment, metric points, artifact
    files and bytes, export failures, and whether each section is complete (every document
    present and valid, every artifact matching its checksum, nothing failed at export).
    A directory that is no bundle at all, or a broken manifest, raises ``BundleError``."""
    bundle = Bundle.at(path)
    manifest = bundle.manifest
    failures = [f for f in manifest.get("export_failures") or [] if isinstance(f, dict)]
    contents = Contents(str(bundle.root), _header(manifest), export_failures=failures)
    for kind in KINDS:
        names = {name.removesuffix("s") for name in (kind.name, *kind.parts)}
        section = {"objects": len(bundle.entries(kind.section.name)), "problems": [],
                   "export_failures": sum(str(f.get("kind")).removesuffix("s") in names
                                          for f in failures)}
        try:
            bundle.load(kind.section)
            section["metric_points"] = sum(facts.get("metric_points", 0)
                                           for facts in bundle.facts[kind.name].values())
        except BundleError as exc:
            section["problems"].append(str(exc))
        if kind.section.artifacts:
            sizes = [entry.get("size", 0) for relative, entry in manifest["checksums"].items()
                     if relative.startswith(kind.section.name + "/") and isinstance(entry, dict)]
            section["artifact_files"], section["artifact_bytes"] = len(sizes), sum(sizes)
        if section["export_failures"]:
            section["problems"].append(f"{section['export_failures']} object(s) failed to "
                                       "export")
        contents.sections[kind.name] = section
    try:
        bundle.check_artifacts()
    except BundleError as exc:
        contents.sections.setdefault(ARTIFACTS, {"objects": 0, "export_failures": 0,
                                                 "problems": []})["problems"].append(str(exc))
    for section in contents.sections.values():
        section["complete"] = not section["problems"]
    contents.experiments = _per_experiment(bundle)
    return contents


def _header(manifest: dict) -> dict:
    source = json.loads(redact(json.dumps(manifest["source"])))
    return {"format": manifest["format"], "format_version": manifest["format_version"],
            "tool_version": manifest.get("tool_version"), "created_at": manifest.get("created_at"),
            "command": manifest.get("command"), "options": manifest.get("options") or {},
            "source": source}


def _per_experiment(bundle: Bundle) -> list[dict]:
    """Each experiment with the number of objects of each kind that its inventory entries
    place in it."""
    experiments = {e["id"]: {"experiment_id": e["id"], "name": e.get("name"), "objects": {}}
                   for e in bundle.entries(EXPERIMENTS)}
    for kind in (kind for kind in KINDS if kind.name != EXPERIMENTS):
        for entry in bundle.entries(kind.section.name):
            found = experiments.get(entry.get("experiment_id"))
            if found is not None:
                found["objects"][kind.name] = found["objects"].get(kind.name, 0) + 1
    return list(experiments.values())


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} B"
    scaled, unit = next((count / 1000 ** power, unit) for power, unit in
                        ((3, "GB"), (2, "MB"), (1, "KB")) if count >= 1000 ** power)
    return f"{scaled:.1f} {unit}"
