-- ohlcv and indicators partitioned by ts (native declarative partitioning): first by the
-- timeframe's class (LIST), then by RANGE of ts: one partition per year for daily and longer
-- bars (ohlcv_daily_2024), one per month for intraday bars (ohlcv_intraday_2024_05). The
-- primary key (symbol, timeframe, ts) holds both partition keys, so ON CONFLICT upserts work
-- as before. Range partitions are created on demand by the loader through
-- ml_ensure_ts_partitions; rows served before this migration are moved into them.

CREATE FUNCTION {schema}.ml_ensure_ts_partitions(
    parent regclass, timeframe text, lo timestamptz, hi timestamptz
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    intraday boolean := timeframe IN ('1m', '15m', '30m', '1h', '4h');
    cls text := CASE WHEN intraday THEN 'intraday' ELSE 'daily' END;
    unit text := CASE WHEN intraday THEN 'month' ELSE 'year' END;
    step interval := CASE WHEN intraday THEN interval '1 month' ELSE interval '1 year' END;
    nsp text;
    base text;
    start timestamptz;
    made integer := 0;
BEGIN
    SELECT n.nspname, c.relname INTO nsp, base
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = parent;
    start := date_trunc(unit, lo AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    WHILE start <= hi LOOP
        IF to_regclass(format('%I.%I', nsp, base || '_' || cls || '_'
                || to_char(start AT TIME ZONE 'UTC', CASE WHEN intraday THEN 'YYYY_MM' ELSE 'YYYY' END))) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)',
                nsp,
                base || '_' || cls || '_'
                    || to_char(start AT TIME ZONE 'UTC', CASE WHEN intraday THEN 'YYYY_MM' ELSE 'YYYY' END),
                nsp,
                base || '_' || cls,
                start,
                start + step
            );
            made := made + 1;
        END IF;
        start := start + step;
    END LOOP;
    RETURN made;
END $$;

ALTER TABLE {schema}.ohlcv RENAME TO ohlcv_unpartitioned;
ALTER TABLE {schema}.ohlcv_unpartitioned RENAME CONSTRAINT ohlcv_pkey TO ohlcv_unpartitioned_pkey;
CREATE TABLE {schema}.ohlcv (
    LIKE {schema}.ohlcv_unpartitioned INCLUDING DEFAULTS,
    CONSTRAINT ohlcv_pkey PRIMARY KEY (symbol, timeframe, ts)
) PARTITION BY LIST (timeframe);
CREATE TABLE {schema}.ohlcv_daily PARTITION OF {schema}.ohlcv
    FOR VALUES IN ('1D', '1W') PARTITION BY RANGE (ts);
CREATE TABLE {schema}.ohlcv_intraday PARTITION OF {schema}.ohlcv
    FOR VALUES IN ('1m', '15m', '30m', '1h', '4h') PARTITION BY RANGE (ts);

ALTER TABLE {schema}.indicators RENAME TO indicators_unpartitioned;
ALTER TABLE {schema}.indicators_unpartitioned
    RENAME CONSTRAINT indicators_pkey TO indicators_unpartitioned_pkey;
CREATE TABLE {schema}.indicators (
    LIKE {schema}.indicators_unpartitioned INCLUDING DEFAULTS,
    CONSTRAINT indicators_pkey PRIMARY KEY (symbol, timeframe, ts)
) PARTITION BY LIST (timeframe);
CREATE TABLE {schema}.indicators_daily PARTITION OF {schema}.indicators
    FOR VALUES IN ('1D', '1W') PARTITION BY RANGE (ts);
CREATE TABLE {schema}.indicators_intraday PARTITION OF {schema}.indicators
    FOR VALUES IN ('1m', '15m', '30m', '1h', '4h') PARTITION BY RANGE (ts);

SELECT {schema}.ml_ensure_ts_partitions('{schema}.ohlcv'::regclass, timeframe, min(ts), max(ts))
FROM {schema}.ohlcv_unpartitioned GROUP BY timeframe;
INSERT INTO {schema}.ohlcv SELECT * FROM {schema}.ohlcv_unpartitioned;
DROP TABLE {schema}.ohlcv_unpartitioned;

SELECT {schema}.ml_ensure_ts_partitions('{schema}.indicators'::regclass, timeframe, min(ts), max(ts))
FROM {schema}.indicators_unpartitioned GROUP BY timeframe;
INSERT INTO {schema}.indicators SELECT * FROM {schema}.indicators_unpartitioned;
DROP TABLE {schema}.indicators_unpartitioned;
