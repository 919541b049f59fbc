ALTER TABLE {target} DROP CONSTRAINT {constraint}
