"""The writer lock of a lake on object storage: a lease kept by conditional puts.

The same contract as the local file lock (:mod:`marketlake.lake.lock`), built on the two
conditional writes every S3 API offers: the record ``<lake>/.writer.json`` is created with
``If-None-Match: *`` (only one writer can create it) and renewed every ``lease_s / 3`` seconds
with ``If-Match: <its etag>``. A holder killed with ``kill -9`` stops renewing; once its record
is ``lease_s`` old (by the record's Last-Modified, the store's clock, against the taker's
clock, so hosts need roughly synchronised clocks: a skew below ``2/3 lease_s`` is harmless),
the next writer replaces it with ``If-Match`` on the etag it read (two takers cannot both win)
and receives the dead holder's record to mark that run interrupted.

The lease serialises runs; the safety of the table data never depends on it, because every
Delta commit is itself a conditional put of the next log version.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from marketlake.errors import LakeBusyError
from marketlake.lake.location import LakeLocation, storage_errors
from marketlake.lake.lock import _CONTEXT, LockInfo

RECORD_KEY = ".writer.json"
_POLL_S = 0.2


@dataclass
class _Lease:
    info: LockInfo
    etag: str
    depth: int
    stop: threading.Event
    thread: threading.Thread | None = None
    lost: bool = False


_LEASES: dict[str, _Lease] = {}  # lake URI -> this process's lease on it
_GUARD = threading.Lock()


class LeaseLock:
    """The writer lock of the lake at ``location`` (an object-store URI)."""

    def __init__(self, location: LakeLocation) -> None:
        self.location = location
        self._key = location.uri

    def holder(self) -> LockInfo | None:
        """Who holds the lock now (None when it is free or its lease ran out)."""
        with _GUARD:
            held = _LEASES.get(self._key)
        if held is not None:
            return held.info
        found = self._read()
        if found is None or self._expired(found[2]):
            return None
        return found[0]

    def acquire(self, run_id: str, stage: str, *, wait: float | bool = False) -> LockInfo | None:
        """Take the lock for ``run_id`` (``wait`` as for the local lock); returns the record of
        a previous holder whose lease ran out without a release, else None."""
        with _GUARD:
            held = _LEASES.get(self._key)
            if held is not None and (held.info.run_id == run_id or self._key in _CONTEXT.get()):
                held.depth += 1
                return None
        info = LockInfo(run_id, stage, datetime.now(UTC), os.getpid(), socket.gethostname())
        deadline = None if wait is True else time.monotonic() + (0.0 if not wait else float(wait))
        while True:
            etag, stale, busy = self._try_take(info)
            if etag is not None:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise LakeBusyError(busy or LockInfo("unknown", "unknown", info.started_at, 0, ""))
            time.sleep(_POLL_S)
        lease = _Lease(info, etag, 1, threading.Event())
        lease.thread = threading.Thread(
            target=self._renew, args=(lease,), name="marketlake-lease", daemon=True
        )
        with _GUARD:
            _LEASES[self._key] = lease
        _CONTEXT.set(_CONTEXT.get() | {self._key})
        lease.thread.start()
        return stale

    def release(self) -> None:
        """Release one level; the last one stops renewing and deletes the record (only if it
        is still this holder's)."""
        with _GUARD:
            held = _LEASES.get(self._key)
            if held is None:
                return
            held.depth -= 1
            if held.depth > 0:
                return
            del _LEASES[self._key]
        _CONTEXT.set(_CONTEXT.get() - {self._key})
        held.stop.set()
        if held.thread is not None:
            held.thread.join()
        found = self._read()
        if found is not None and found[1] == held.etag:
            self.location.delete(RECORD_KEY)

    # -- internals ----------------------------------------------------------------------
    def _try_take(self, info: LockInfo) -> tuple[str | None, LockInfo | None, LockInfo | None]:
        """(etag of our record, dead holder's record, live holder's record)."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        store = self.location.store()
        try:
            with storage_errors("take the writer lease", RECORD_KEY):
                res = obstore.put(store, RECORD_KEY, info.to_json(), mode="create")
            return res["e_tag"], None, None
        except AlreadyExistsError:
            pass
        found = self._read()
        if found is None:
            return None, None, None  # released just now: try again
        record, etag, modified = found
        if not self._expired(modified):
            return None, None, record
        try:
            with storage_errors("take over the writer lease", RECORD_KEY):
                res = obstore.put(store, RECORD_KEY, info.to_json(), mode={"e_tag": etag})
        except (PreconditionError, FileNotFoundError):
            return None, None, record  # another taker won
        return res["e_tag"], record, None

    def _expired(self, modified: datetime) -> bool:
        return (datetime.now(UTC) - modified).total_seconds() > self.location.lease_s

    def _read(self) -> tuple[LockInfo, str, datetime] | None:
        import obstore

        try:
            with storage_errors("read the writer lease", RECORD_KEY):
                got = obstore.get(self.location.store(), RECORD_KEY)
                data = bytes(got.bytes())
        except FileNotFoundError:
            return None
        meta = got.meta
        try:
            record = LockInfo.from_json(data)
        except (ValueError, KeyError, TypeError):
            record = LockInfo("unknown", "unknown", meta["last_modified"], 0, "")
        return record, meta["e_tag"], meta["last_modified"]

    def _renew(self, lease: _Lease) -> None:
        import obstore
        from obstore.exceptions import BaseError, NotFoundError, PreconditionError

        every = self.location.lease_s / 3
        while not lease.stop.wait(every):
            try:
                res = obstore.put(
                    self.location.store(),
                    RECORD_KEY,
                    lease.info.to_json(),
                    mode={"e_tag": lease.etag},
                )
                lease.etag = res["e_tag"]
            except (PreconditionError, NotFoundError):
                # taken over after this process stalled past the lease: commits stay safe
                # (each is a conditional put), but the lease is no longer ours to renew
                lease.lost = True
                return
            except BaseError:
                continue  # the store did not answer: try again at the next tick
