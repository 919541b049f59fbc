SELECT {schema}.ml_ensure_ts_partitions($1::regclass, $2, $3, $4)
