-- On a partitioned target (whose RETURNING cannot read xmax): how many staged keys to
-- upsert were absent before the statement, i.e. the rows it inserts.
(SELECT count(*) FROM {staging} AS s
 WHERE NOT s._ml_delete AND NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {key_match}))
