-- Monthly bars (timeframe '1mo') and open interest.
-- open_interest: contracts open at the bar's close (F&O), null where a market has none; added
-- to the partitioned parent, so every partition gains it (no rewrite: a nullable column).
-- '1mo' bars are daily-class rows (one range partition per year): the daily LIST partitions
-- are detached and attached again with the new value (the attach checks the rows it holds).

ALTER TABLE {schema}.ohlcv ADD COLUMN open_interest double precision;

ALTER TABLE {schema}.ohlcv DETACH PARTITION {schema}.ohlcv_daily;
ALTER TABLE {schema}.ohlcv ATTACH PARTITION {schema}.ohlcv_daily
    FOR VALUES IN ('1D', '1W', '1mo');

ALTER TABLE {schema}.indicators DETACH PARTITION {schema}.indicators_daily;
ALTER TABLE {schema}.indicators ATTACH PARTITION {schema}.indicators_daily
    FOR VALUES IN ('1D', '1W', '1mo');
