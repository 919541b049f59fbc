"""One commit that replaces whole partitions by files written elsewhere (other processes or
hosts): the commit half of a distributed write.

Workers write parquet files into the table's storage and return their add actions; the driver
calls :func:`swap_partitions` once, which removes every file of the partitions whose
``column`` is in ``values`` and adds the workers' files, pinned to the version the driver read
(another writer in between is a conflict, never a silent overwrite). Files that never reach a
commit (a refused one, or a worker killed after writing) are deleted here or by ``maintain``.
"""

from __future__ import annotations

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.schema import Field
from deltalake.transaction import AddAction

from marketlake.lake._errors import CommitConflict, lake_errors
from marketlake.lake.location import LakeLocation
from marketlake.lake.tables import TableDef
from marketlake.lake.writes import (
    commit_properties,
    commit_swap,
    create,
    literal,
    live_files,
    remove_files,
)


def swap_partitions(
    dt: DeltaTable | None,
    location: LakeLocation,
    tdef: TableDef,
    column: str,
    values: list[str],
    adds: list[AddAction],
    new_columns: dict[str, pa.DataType],
    *,
    run_id: str,
    stage: str,
    metadata: dict[str, str] | None = None,
) -> int:
    """Replace the partitions ``column in values`` by ``adds`` in one commit on top of ``dt``'s
    version; columns in ``new_columns`` the table lacks are added first (a metadata-only
    commit, also pinned). Returns the number of files removed. On any failure the added files
    are deleted."""
    for v in values:
        literal(v)
    props = commit_properties(run_id, stage, metadata)
    uri, options = location.table_uri(tdef.name), location.storage_options
    try:
        with lake_errors("swap partitions of", tdef.name):
            dt = dt or create(uri, tdef, options)
            have = set(dt.schema().to_arrow().names)
            fields = [Field.from_arrow(pa.field(c, t)) for c, t in new_columns.items()]
            fields = [f for f in fields if f.name not in have]
            if fields:
                before = dt.version()
                dt.alter.add_columns(fields, commit_properties=props)
                dt = DeltaTable(uri, storage_options=options)
                if dt.version() != before + 1:
                    raise CommitConflict(f"swap in {tdef.name}: another writer committed")
            gone = [f for f in live_files(dt) if f.get(f"partition.{column}") in values]
            commit_swap(dt, tdef, gone, adds, props)
    except BaseException:
        remove_files(location, tdef.name, [a.path for a in adds])
        raise
    return len(gone)
