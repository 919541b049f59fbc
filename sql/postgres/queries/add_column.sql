-- The type comes from the loader's fixed arrow -> PostgreSQL type map.
ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {column} {type}
