-- The serving twin of every lake data table (lake/tables.py), keyed like the lake.
-- The schema placeholder is replaced by the migration runner with the quoted, validated serving schema.
-- JSON held as text in the lake is jsonb here; the loader casts it on the server.

CREATE TABLE {schema}.instruments (
    symbol           text NOT NULL,
    name             text,
    asset_type       text,
    exchange         text,
    timezone         text,
    currency         text,
    sector           text,
    industry         text,
    is_etf           boolean,
    underlying       text,
    expiry           date,
    strike           double precision,
    option_type      text,
    lot_size         bigint,
    active           boolean,
    delisted_at      timestamptz,
    provider         text,
    provider_symbols jsonb,
    updated_at       timestamptz,
    run_id           text,
    CONSTRAINT instruments_pkey PRIMARY KEY (symbol)
);

CREATE TABLE {schema}.ohlcv (
    symbol      text NOT NULL,
    timeframe   text NOT NULL,
    ts          timestamptz NOT NULL,
    open        double precision,
    high        double precision,
    low         double precision,
    close       double precision,
    volume      double precision,
    adj_close   double precision,
    provider    text,
    is_final    boolean,
    ingested_at timestamptz,
    run_id      text,
    period      text NOT NULL,
    CONSTRAINT ohlcv_pkey PRIMARY KEY (symbol, timeframe, ts)
);

CREATE TABLE {schema}.corporate_actions (
    symbol      text NOT NULL,
    ex_date     date NOT NULL,
    kind        text NOT NULL,
    ratio       double precision,
    amount      double precision,
    currency    text,
    provider    text,
    ingested_at timestamptz,
    run_id      text,
    CONSTRAINT corporate_actions_pkey PRIMARY KEY (symbol, ex_date, kind)
);

CREATE TABLE {schema}.profiles (
    symbol      text NOT NULL,
    provider    text NOT NULL,
    name        text,
    description text,
    sector      text,
    industry    text,
    country     text,
    website     text,
    market_cap  double precision,
    volume_24h  double precision,
    icon_url    text,
    icon_path   text,
    raw         jsonb,
    fetched_at  timestamptz,
    run_id      text,
    CONSTRAINT profiles_pkey PRIMARY KEY (symbol, provider)
);

CREATE TABLE {schema}.fundamentals (
    symbol     text NOT NULL,
    data_type  text NOT NULL,
    period_end date NOT NULL,
    item       text NOT NULL,
    value      double precision,
    text       text,
    raw        jsonb,
    provider   text,
    fetched_at timestamptz,
    run_id     text,
    CONSTRAINT fundamentals_pkey PRIMARY KEY (symbol, data_type, period_end, item)
);

CREATE TABLE {schema}.market_cache (
    key        text NOT NULL,
    value      jsonb,
    provider   text,
    fetched_at timestamptz,
    expires_at timestamptz,
    run_id     text,
    CONSTRAINT market_cache_pkey PRIMARY KEY (key)
);

-- One double precision column per indicator output is added by the loader as the lake's
-- evolving schema grows (ALTER TABLE ... ADD COLUMN IF NOT EXISTS).
CREATE TABLE {schema}.indicators (
    symbol      text NOT NULL,
    timeframe   text NOT NULL,
    ts          timestamptz NOT NULL,
    computed_at timestamptz,
    run_id      text,
    period      text NOT NULL,
    CONSTRAINT indicators_pkey PRIMARY KEY (symbol, timeframe, ts)
);

-- The lake key (run_id, table, symbol, ts) allows a NULL ts (a row rejected before it had
-- one), so the twin's key is a unique constraint whose NULLs compare equal (PostgreSQL 15+;
-- older servers get a plain unique constraint).
CREATE TABLE {schema}.quarantine (
    run_id         text NOT NULL,
    "table"        text NOT NULL,
    symbol         text NOT NULL,
    ts             timestamptz,
    reason         text,
    source         text,
    row            jsonb,
    quarantined_at timestamptz
);

DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 150000 THEN
        EXECUTE 'ALTER TABLE {schema}.quarantine ADD CONSTRAINT quarantine_key '
                'UNIQUE NULLS NOT DISTINCT (run_id, "table", symbol, ts)';
    ELSE
        EXECUTE 'ALTER TABLE {schema}.quarantine ADD CONSTRAINT quarantine_key '
                'UNIQUE (run_id, "table", symbol, ts)';
    END IF;
END
$$;
