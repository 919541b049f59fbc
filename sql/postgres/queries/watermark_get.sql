SELECT lake_version, lake_table_id, rows FROM {schema}.load_watermarks WHERE table_name = $1
