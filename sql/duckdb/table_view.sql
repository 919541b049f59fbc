-- One lake table as a view over the parquet files of its current Delta snapshot.
-- {name}: table name from the fixed registry; {columns}: its columns (or * for evolving
-- tables); {files}: quoted list of file paths; {options}: read_parquet options.
CREATE OR REPLACE VIEW "{name}" AS
SELECT {columns}
FROM read_parquet({files}, {options})
