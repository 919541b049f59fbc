-- A lake table as a view over a registered arrow relation: an empty table of its schema
-- (no data yet), or the Delta snapshot's dataset (a lake on object storage).
CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM "{relation}"
