-- Per-kind routes of an instrument as their own column (JSON object kind -> provider), no
-- longer a reserved key of provider_symbols; rows served before move theirs across.

ALTER TABLE {schema}.instruments ADD COLUMN routes jsonb;

UPDATE {schema}.instruments
SET routes = provider_symbols -> 'routes',
    provider_symbols = provider_symbols - 'routes'
WHERE jsonb_typeof(provider_symbols -> 'routes') = 'object';
