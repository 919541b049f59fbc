-- Transaction-level: two loaders of the same table queue here; released at commit/rollback.
SELECT pg_advisory_xact_lock(hashtext($1))
