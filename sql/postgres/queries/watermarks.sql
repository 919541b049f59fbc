SELECT table_name, lake_version, lake_table_id, rows FROM {schema}.load_watermarks
