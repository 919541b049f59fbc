-- The columns a set of parquet files holds (their footers only); the file list is bound.
DESCRIBE SELECT * FROM read_parquet($1, union_by_name = true)
