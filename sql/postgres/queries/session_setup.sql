-- Notice a vanished client during long statements (PostgreSQL 14+; absent elsewhere), and no
-- JIT compilation: a load's statements touch few rows per call, yet their estimates over
-- every partition pass the JIT threshold, and compiling (0.1-0.3 s a statement) cost more
-- than running them.
SELECT set_config(name, CASE name WHEN 'jit' THEN 'off' ELSE '5s' END, false)
FROM pg_catalog.pg_settings
WHERE name IN ('client_connection_check_interval', 'jit')
