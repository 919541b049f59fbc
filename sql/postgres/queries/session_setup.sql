-- Notice a vanished client during long statements (PostgreSQL 14+; absent elsewhere).
SELECT set_config(name, '5s', false) FROM pg_catalog.pg_settings
WHERE name = 'client_connection_check_interval'
