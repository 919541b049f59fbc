-- Per-kind routes of an instrument as their own column (JSON object kind -> provider), and the
-- universe source that listed it, no longer reserved keys of provider_symbols; rows served
-- before move theirs across.

ALTER TABLE {schema}.instruments ADD COLUMN routes jsonb;

UPDATE {schema}.instruments
SET routes = provider_symbols -> 'routes',
    provider_symbols = provider_symbols - 'routes'
WHERE jsonb_typeof(provider_symbols -> 'routes') = 'object';

-- The universe source that listed an instrument, likewise out of provider_symbols.
ALTER TABLE {schema}.instruments ADD COLUMN listed_by text;

UPDATE {schema}.instruments
SET listed_by = provider_symbols ->> 'source',
    provider_symbols = provider_symbols - 'source'
WHERE provider_symbols ? 'source';
