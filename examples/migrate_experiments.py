"""Move a team's experiments from one server to another from Python, then check the result.

    python examples/migrate_experiments.py SRC_URI DST_URI 'team-*' [BUNDLE_DIR]

Each side has its own URI (credentials may sit in it: http://user:password@host:5000;
they are never written to the bundle or the report). Exits non-zero if any object failed
or the target differs from the source.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import mlflow_exim


def migrate(src_uri: str, dst_uri: str, selection: str, bundle_dir: Path) -> int:
    exported = mlflow_exim.export_experiments(selection, bundle_dir, tracking_uri=src_uri)
    print(exported.summary(), file=sys.stderr)
    imported = mlflow_exim.import_experiments(bundle_dir, tracking_uri=dst_uri,
                                              import_source_tags=True)
    print(imported.summary(), file=sys.stderr)
    imported.write(bundle_dir.with_name(bundle_dir.name + "-import-report.json"))
    print(json.dumps(imported.extra["id_map"], indent=2))
    card = mlflow_exim.verify(src_uri, dst_uri, experiments=selection)
    print(card.text(), file=sys.stderr)
    return 0 if exported.ok and imported.ok and card.ok else 1


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    src, dst, selection = sys.argv[1:4]
    bundle = Path(sys.argv[4]) if len(sys.argv) == 5 else Path(tempfile.mkdtemp()) / "bundle"
    try:
        sys.exit(migrate(src, dst, selection, bundle))
    except mlflow_exim.EximError as exc:
        sys.exit(f"error: {exc}")
