"""The writer lock of an s3:// lake: a lease kept by conditional puts on a real S3 API."""

import threading

import pytest

from marketlake.errors import LakeBusyError
from marketlake.lake.lease import RECORD_KEY, LeaseLock
from marketlake.lake.location import LakeLocation
from marketlake.lake.lock import writer, writer_lock
from marketlake.pipeline.config import load_settings


def _location(tmp_path, env, lease_s=30.0) -> LakeLocation:
    loc = load_settings(home=tmp_path, env=env).lake
    return LakeLocation(loc.uri, loc.options, lease_s)


def test_one_holder_reentrant_released_and_named_to_others(tmp_path, s3_lake):
    loc = _location(tmp_path, s3_lake)
    assert isinstance(writer_lock(loc), LeaseLock)
    lock = LeaseLock(loc)
    assert lock.holder() is None and lock.acquire("run-1", "sync") is None
    assert lock.acquire("run-1", "compute") is None  # nested, same run
    errors = []

    def other():
        try:
            LeaseLock(loc).acquire("run-2", "sync")
        except LakeBusyError as exc:
            errors.append(exc)

    t = threading.Thread(target=other)  # another context of this process: a second writer
    t.start()
    t.join()
    assert errors and errors[0].holder.run_id == "run-1" and "run-1" in str(errors[0])
    lock.release()
    assert LeaseLock(loc).holder().run_id == "run-1"
    lock.release()
    assert LeaseLock(loc).holder() is None and RECORD_KEY not in loc.list("")


def test_a_lease_not_renewed_is_taken_over_and_its_holder_returned(tmp_path, s3_lake):
    import obstore

    from marketlake.lake.lock import LockInfo

    loc = _location(tmp_path, s3_lake, lease_s=3.0)  # > a loaded moto round trip
    from datetime import UTC, datetime

    dead = LockInfo("dead-run", "sync", datetime.now(UTC), 999999, "gone-host")
    obstore.put(loc.store(), RECORD_KEY, dead.to_json(), mode="create")  # a holder that died
    with pytest.raises(LakeBusyError):
        LeaseLock(loc).acquire("new-run", "sync")
    with writer(loc, "new-run", "sync", wait=15) as stale:
        assert stale is not None and stale.run_id == "dead-run"
        assert LeaseLock(loc).holder().run_id == "new-run"
    assert LeaseLock(loc).holder() is None
