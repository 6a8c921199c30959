-- payops 0005: the operations log (logs:update-operational, docs/reports.md).
--
-- One entry per environment and calendar day (in payops_timezone): the day's summary (who ran
-- what, switches, deployments, incidents), rewritten by every run of logs:update-operational that
-- day, so that the evening's entry holds the whole day. Notes given with -e note=... are kept
-- beside it, each once (the same note again is not a second one), with who wrote it and when;
-- they are never rewritten.

CREATE TABLE IF NOT EXISTS payops.operations_log (
    environment text        NOT NULL,
    day         date        NOT NULL,
    summary     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_by  text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    run_id      text,
    PRIMARY KEY (environment, day)
);

CREATE TABLE IF NOT EXISTS payops.operations_notes (
    id          bigserial   PRIMARY KEY,
    environment text        NOT NULL,
    day         date        NOT NULL,
    note        text        NOT NULL CHECK (length(btrim(note)) > 0),
    written_by  text        NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (environment, day, note),
    FOREIGN KEY (environment, day) REFERENCES payops.operations_log (environment, day)
);
