-- Sync bookkeeping served to apps (sync_status, sync_logs with the seed's columns and
-- indexes), server-side settings, and the per-table load watermark.

CREATE TABLE {schema}.sync_status (
    segment              text NOT NULL,
    symbol               text NOT NULL,
    timeframe            text NOT NULL,
    kind                 text NOT NULL,
    provider             text,
    first_ts             timestamptz,
    last_ts              timestamptz,
    rows                 bigint,
    checked_from         timestamptz,
    last_attempt_at      timestamptz,
    last_success_at      timestamptz,
    status               text,
    error                text,
    consecutive_failures bigint,
    run_id               text,
    CONSTRAINT sync_status_pkey PRIMARY KEY (segment, symbol, timeframe, kind)
);

-- The seed's sync_logs (id, task_name, status, rows_updated, error_message, started_at,
-- completed_at, duration_seconds, metadata) plus the lake key (run_id, task_name).
CREATE TABLE {schema}.sync_logs (
    id               bigserial PRIMARY KEY,
    run_id           text NOT NULL,
    task_name        text NOT NULL,
    stage            text,
    status           text,
    rows_updated     bigint,
    error_message    text,
    started_at       timestamptz,
    completed_at     timestamptz,
    duration_seconds double precision,
    trigger          text,
    metadata         jsonb,
    CONSTRAINT sync_logs_run_task_key UNIQUE (run_id, task_name)
);

CREATE INDEX idx_sync_logs_task_name ON {schema}.sync_logs (task_name);
CREATE INDEX idx_sync_logs_completed_at ON {schema}.sync_logs (completed_at DESC);

CREATE TABLE {schema}.sync_settings (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What each served table holds: the lake version it equals, written in the same transaction
-- as the data. lake_table_id tells a recreated lake table (versions restart) from the old one.
CREATE TABLE {schema}.load_watermarks (
    table_name    text PRIMARY KEY,
    lake_version  bigint NOT NULL,
    lake_table_id text,
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    rows          bigint NOT NULL DEFAULT 0,
    run_id        text
);
