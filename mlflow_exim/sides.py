"""One side of a two-sided command in a process of its own, with that side's environment.

MLflow takes a bearer token (``MLFLOW_TRACKING_TOKEN``) and its retry settings
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``) from the process
environment only, and the library never writes that environment. So when a side needs
settings the process lacks (:attr:`Endpoint.needs_own_process`), its phase (the export of
``migrate`` or a copy, or its import) runs in a child Python whose environment is this
process's plus that side's: each side's token reaches its own server only. The arguments
travel on the child's stdin and the result comes back in a file, never on a command line;
the child's output and logging go to this process's stderr.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mlflow_exim.endpoint import Endpoint
from mlflow_exim.errors import EximError
from mlflow_exim.report import log

T = TypeVar("T")


def call(endpoint: Endpoint, function: Callable[..., T], *args, **kwargs) -> T:
    """``function(*args, **kwargs)``, here when this process's environment suits
    ``endpoint``, else in a child process that has it. ``function`` is a module-level
    function; the endpoints among the arguments travel as their URIs and settings, and the
    child opens its own clients. What it returns comes back pickled, as does an
    :class:`EximError`, whose message is raised here."""
    if not endpoint.needs_own_process:
        return function(*args, **kwargs)
    with tempfile.TemporaryDirectory(prefix="mlflow-exim-side-") as scratch:
        result = Path(scratch) / "result.pickle"
        payload = pickle.dumps({"function": function, "args": args, "kwargs": kwargs,
                                "result": str(result), "level": log.getEffectiveLevel()})
        child = subprocess.run([sys.executable, "-m", "mlflow_exim.sides"], input=payload,
                               env={**os.environ, **endpoint.environment},
                               stdout=sys.stderr, check=False)
        if not result.exists():
            name = function.__name__.strip("_").replace("_", " ")
            raise EximError(f"the {name} of {endpoint.display_uri} ended without a "
                            f"result (its process exited with {child.returncode})")
        status, value = pickle.loads(result.read_bytes())
    if status == "error":
        raise EximError(value)
    return value


def _main() -> None:
    """The child: read the call from stdin, run it, write ("ok", result) or ("error",
    message) to the result file."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    request = pickle.loads(sys.stdin.buffer.read())
    log.setLevel(request["level"])
    try:
        outcome = ("ok", request["function"](*request["args"], **request["kwargs"]))
    except EximError as exc:
        outcome = ("error", str(exc))
    Path(request["result"]).write_bytes(pickle.dumps(outcome))


if __name__ == "__main__":
    _main()
