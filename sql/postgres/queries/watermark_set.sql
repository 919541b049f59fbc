INSERT INTO {schema}.load_watermarks AS w (table_name, lake_version, lake_table_id, rows, run_id)
VALUES ($1, $2::bigint, $3, $4::bigint, $5)
ON CONFLICT (table_name) DO UPDATE
SET lake_version = EXCLUDED.lake_version,
    lake_table_id = EXCLUDED.lake_table_id,
    rows = EXCLUDED.rows,
    run_id = EXCLUDED.run_id,
    loaded_at = now()
