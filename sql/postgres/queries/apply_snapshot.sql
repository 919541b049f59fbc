-- Make the served table equal a staged snapshot of the lake table: delete the rows whose key
-- the snapshot lacks, upsert the rest (updating only rows that really differ).
WITH deleted AS (
    DELETE FROM {target} AS t
    WHERE NOT EXISTS (SELECT 1 FROM {staging} AS s WHERE {key_match})
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
