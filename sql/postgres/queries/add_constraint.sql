-- The definition is the server's own pg_get_constraintdef() text, read just before the drop.
ALTER TABLE {target} ADD CONSTRAINT {constraint} {definition}
