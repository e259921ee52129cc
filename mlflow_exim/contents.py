"""A bundle's table of contents, read without any server (like ``pg_restore -l``), and its
integrity check (like ``restic check``).

Both read the manifest and verify every section's files against the manifest's checksums
and every document, exactly as an import does before it writes; a damaged section is
reported as incomplete with the reason instead of stopping the listing, so that a user can
see what a bundle holds, and whether it is whole, before deciding to import it.
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

FILES = "files"  # the problems of the bundle's tree as a whole (a link, a file not listed)


@dataclass
class Contents:
    """What :func:`inspect_bundle` found; ``to_dict()`` is the ``--json`` form."""

    path: str
    header: dict
    sections: dict[str, dict] = field(default_factory=dict)
    experiments: list[dict] = field(default_factory=list)
    export_failures: list[dict] = field(default_factory=list)
    verified: dict = field(default_factory=lambda: {"files": 0, "bytes": 0})
    unverified: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(section["complete"] for section in self.sections.values())

    def to_dict(self) -> dict:
        return {"path": self.path, **self.header, "complete": self.complete,
                "sections": self.sections, "experiments": self.experiments,
                "export_failures": self.export_failures, "verified": self.verified,
                "unverified": self.unverified}

    @property
    def problems(self) -> list[str]:
        return [problem for section in self.sections.values() for problem in section["problems"]]

    def unverified_line(self) -> str | None:
        """Which files the bundle's format recorded no checksum for, if any."""
        if not self.unverified:
            return None
        names = ", ".join(f"{name} ({n})" for name, n in sorted(self.unverified.items()))
        return (f"{sum(self.unverified.values())} files could not be verified: format "
                f"{self.header['format_version']} recorded no checksum for them: {names}")

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
        lines += ["", f"  verified {self.verified['files']} files, "
                      f"{_size(self.verified['bytes'])}, against the manifest's checksums"]
        if self.unverified:
            lines.append("  " + self.unverified_line())
        lines += ["", "  result: " + ("complete" if self.complete else "INCOMPLETE")]
        return "\n".join(lines)


@dataclass
class Check:
    """What :func:`check_bundle` found: the integrity part of :class:`Contents`."""

    contents: Contents

    @property
    def ok(self) -> bool:
        return self.contents.complete

    def to_dict(self) -> dict:
        c = self.contents
        return {"path": c.path, "format_version": c.header["format_version"], "ok": self.ok,
                "verified": c.verified, "unverified": c.unverified, "problems": c.problems}

    def text(self) -> str:
        c = self.contents
        lines = [f"bundle {c.path} (format {c.header['format_version']})",
                 f"  verified {c.verified['files']} files, {_size(c.verified['bytes'])}, "
                 "against the manifest's checksums"]
        if c.unverified:
            lines.append("  " + c.unverified_line())
        lines += [f"  problem: {problem}" for problem in c.problems]
        lines.append("  result: " + ("ok" if self.ok else f"DAMAGED ({len(c.problems)} "
                                                          "problem(s))"))
        return "\n".join(lines)


def check_bundle(path: str | Path) -> Check:
    """Verify the bundle at ``path`` as an import would before writing anything, without
    any server: no symbolic link or special file, every file of every object matching its
    size and SHA-256 in the manifest (format 3; formats 1 and 2 recorded the artifacts'
    only, and the others are reported unverified), every document valid, nothing failed
    at export. A directory that is no bundle at all, or a broken manifest, raises
    ``BundleError``."""
    return Check(inspect_bundle(path))


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
    try:
        bundle.scan()
    except BundleError as exc:  # nothing is read through a link
        contents.sections[FILES] = {"objects": 0, "export_failures": 0, "problems": [str(exc)],
                                    "complete": False}
        return contents
    loaded_all = True
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
            loaded_all = False
        files = bundle.files.get(kind.section.name, {})
        if kind.section.artifacts:
            section["artifact_files"] = files.get("artifact_files", 0)
            section["artifact_bytes"] = files.get("artifact_bytes", 0)
        contents.verified["files"] += files.get("files", 0)
        contents.verified["bytes"] += files.get("bytes", 0)
        if section["export_failures"]:
            section["problems"].append(f"{section['export_failures']} object(s) failed to "
                                       "export")
        contents.sections[kind.name] = section
    if loaded_all:
        try:  # only once every object was checked: a section that failed left files unseen
            bundle.check_all_listed()
        except BundleError as exc:
            contents.sections[FILES] = {"objects": 0, "export_failures": 0,
                                        "problems": [str(exc)]}
    contents.unverified = dict(bundle.unverified)
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
            found = experiments.get(str(entry.get("experiment_id")))
            if found is not None:
                found["objects"][kind.name] = found["objects"].get(kind.name, 0) + 1
    return list(experiments.values())


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} B"
    scaled, unit = next((count / 1000 ** power, unit) for power, unit in
                        ((3, "GB"), (2, "MB"), (1, "KB")) if count >= 1000 ** power)
    return f"{scaled:.1f} {unit}"
