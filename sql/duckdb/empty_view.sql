-- A lake table that has no data yet: a view over an empty arrow table of its schema.
CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM "{relation}"
