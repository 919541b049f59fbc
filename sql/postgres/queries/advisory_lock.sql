-- Session-level: held across the per-migration transactions, released by unlock or disconnect.
SELECT pg_advisory_lock(hashtext($1))
