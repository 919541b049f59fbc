-- Apply a staged delta in one statement: delete the keys flagged for deletion; insert the
-- others when new, update them only when some column really differs (unchanged rows are
-- not touched). Deleted and upserted keys are disjoint (one change per key is staged).
-- Inserted rows are told by their xmax, or, on a partitioned target (no system columns in
-- RETURNING), counted as the staged keys absent before the statement.
WITH deleted AS (
    DELETE FROM {target} AS t USING {staging} AS s
    WHERE s._ml_delete AND {key_match}
    RETURNING 1
),
upserted AS (
    INSERT INTO {target} AS t ({columns})
    SELECT {values}
    FROM {staging} AS s
    WHERE NOT s._ml_delete
    ON CONFLICT ({key}) DO UPDATE SET {assignments}
    WHERE ({target_values}) IS DISTINCT FROM ({excluded_values})
    RETURNING {inserted_flag} AS inserted
)
SELECT n_inserted, n_upserted - n_inserted, n_deleted
FROM (SELECT {inserted} AS n_inserted,  -- counted once
             count(*) AS n_upserted,
             (SELECT count(*) FROM deleted) AS n_deleted
      FROM upserted) AS counts
