"""Leases on a target: one job at a time for one piece of work, across processes and hosts.

Two jobs that write the same objects into one target at once would each take the other's
half-written objects for leftovers of an interrupted import and delete them (two
``copy-model-version`` calls for one version, a CI retry beside the first; two imports of
one bundle). A lease is a registered model on the target named ``mlflow-exim.lease.<hash
of the work>``: creating a registered model is the one write MLflow makes atomic (a name
is unique), and deleting one frees its name for good. Its tags say who holds it and until
when; the holder renews it while it works and deletes it when done. A holder that was
killed leaves it until it expires (``TTL_SECONDS``), then the next job takes it over.

Two jobs that both find the same expired lease may both take it over; that needs a job
killed in the middle and two others starting within the same second.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

from mlflow.entities.model_registry import RegisteredModelTag

from mlflow_exim.endpoint import Endpoint
from mlflow_exim.errors import EximError
from mlflow_exim.report import log, one_line

PREFIX = "mlflow-exim.lease."
OWNER, EXPIRES = "mlflow_exim.lease.owner", "mlflow_exim.lease.expires"
WORK = "mlflow_exim.lease.work"
TTL_SECONDS = 20
_ALREADY = ("RESOURCE_ALREADY_EXISTS", "already exists")
# Tries, past the wait, to take a lease that was freed between a clash and the look at its
# holder (another job took it first each time, or its server keeps answering so).
FREED_TRIES = 5


def name_of(key: str) -> str:
    """The registered model that is the lease on the work ``key``."""
    return PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


@contextlib.contextmanager
def held(dst: Endpoint, key: str, work: str, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the lease on ``key`` (``work`` says what it is, in the error and on the target)
    for the ``with`` block. Another job's live lease is waited for up to ``wait`` seconds,
    then refused with one line naming the holder and when its lease ends."""
    name = name_of(key)
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    try:
        _acquire(dst, name, owner, work, time.monotonic() + wait)
    except EximError:
        raise
    except Exception as exc:  # noqa: BLE001 - the target failed us before any work
        raise EximError(f"{work}: cannot take its lease on {dst.display_uri}: "
                        f"{one_line(exc)}") from None
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(dst, name, stop), daemon=True,
                               name="mlflow-exim-lease")
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(Exception):  # an expired lease is taken over anyway
            if (_holder(dst, name) or ("",))[0] == owner:
                dst.registry.delete_registered_model(name)


def _acquire(dst: Endpoint, name: str, owner: str, work: str, deadline: float) -> None:
    """Take the lease ``name``, waiting for a live one until ``deadline``."""
    takeovers = freed = 0
    while not _take(dst, name, owner, work):
        holder = _holder(dst, name)
        if holder is None:  # freed meanwhile: taken on the next try, unless others keep
            freed += 1  # taking it first
            if freed > FREED_TRIES and time.monotonic() >= deadline:
                raise EximError(f"{work}: the lease {name} on {dst.display_uri} was taken by "
                                f"other jobs on each of {freed} tries; run again")
            continue
        if holder[0] == owner:  # ours: MLflow sent our create again after a lost answer
            break
        if holder[1] < time.time():
            takeovers += 1
            if takeovers > 3:
                raise EximError(f"{work}: the expired lease {name} on {dst.display_uri} cannot "
                                "be removed; delete that registered model")
            log.warning("%s: taking over the lease of %s, which expired (its job was killed?)",
                        work, holder[0])
            with contextlib.suppress(Exception):  # another job may have taken it first
                if _holder(dst, name) == holder:
                    dst.registry.delete_registered_model(name)
            continue
        if time.monotonic() >= deadline:
            until = datetime.fromtimestamp(holder[1], timezone.utc).strftime("%H:%M:%S UTC")
            raise EximError(f"{work}: another job ({holder[0]}) is doing it on "
                            f"{dst.display_uri} and holds its lease until {until}; run "
                            "again once it is done (or after that time, if it was killed)")
        time.sleep(min(1.0, max(deadline - time.monotonic(), 0.1)))


def _expiry() -> str:
    return str(int(time.time()) + TTL_SECONDS)


def _take(dst: Endpoint, name: str, owner: str, work: str) -> bool:
    try:
        dst.client.create_registered_model(
            name, tags={OWNER: owner, EXPIRES: _expiry(), WORK: work[:5000]},
            description="A lease held by mlflow-exim while it works; deleted when done.")
        return True
    except Exception as exc:
        # MLflow's server words a name clash by reading the model it clashed with: when its
        # holder released it in between, the create answers that the model does not exist.
        if any(m in str(exc) for m in _ALREADY) or _gone(exc):
            return False
        raise


def _gone(exc: Exception) -> bool:
    """Whether ``exc`` says the lease's registered model does not exist (a server's answer,
    or an embedded store's)."""
    return "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower()


def _holder(dst: Endpoint, name: str) -> tuple[str, float] | None:
    """(owner, expiry as a Unix time) of the lease, or None when there is none."""
    try:
        tags = dst.client.get_registered_model(name).tags or {}
    except Exception as exc:
        if _gone(exc):
            return None
        raise
    try:
        return tags.get(OWNER, "?"), float(tags.get(EXPIRES, 0))
    except ValueError:
        return tags.get(OWNER, "?"), 0.0


def _renew(dst: Endpoint, name: str, stop: threading.Event) -> None:
    while not stop.wait(TTL_SECONDS / 4):
        try:
            dst.registry.set_registered_model_tag(name, RegisteredModelTag(EXPIRES, _expiry()))
        except Exception as exc:  # noqa: BLE001 - the work goes on; the lease may lapse
            log.warning("%s: lease %s not renewed: %s", dst.display_uri, name, exc)
