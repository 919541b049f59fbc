-- The demo's sample: daily bars per symbol with the latest close and RSI(14).
SELECT o.symbol,
       count(*)                          AS bars,
       max(o.ts)::DATE                   AS last_day,
       round(arg_max(o.close, o.ts), 2)  AS last_close,
       round(arg_max(i.rsi_14, i.ts), 1) AS rsi_14
FROM ohlcv o
LEFT JOIN indicators i USING (symbol, timeframe, ts)
WHERE o.timeframe = '1D'
GROUP BY o.symbol
ORDER BY o.symbol
LIMIT 8
