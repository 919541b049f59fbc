-- DCF valuations (FMP): one row per symbol, valuation date and provider, history kept.
-- The latest per symbol is one DISTINCT ON away (the index serves it):
--   SELECT DISTINCT ON (symbol) * FROM {schema}.valuations ORDER BY symbol, date DESC;

CREATE TABLE {schema}.valuations (
    symbol     text NOT NULL,
    date       date NOT NULL,
    provider   text NOT NULL,
    dcf        double precision,
    price      double precision,
    fetched_at timestamptz,
    run_id     text,
    CONSTRAINT valuations_pkey PRIMARY KEY (symbol, date, provider)
);

CREATE INDEX valuations_symbol_latest ON {schema}.valuations (symbol, date DESC);
