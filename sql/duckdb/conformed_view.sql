-- A lake table's relation with the defined columns its files do not hold yet as typed NULLs
-- (a lake written before the column existed). {name}, {relation}: internal names; {nulls}:
-- the NULL columns, from the fixed table registry.
CREATE OR REPLACE VIEW "{name}" AS SELECT *{nulls} FROM "{relation}"
