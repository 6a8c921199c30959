-- payops 0006: security measures, scans and incidents.
--
-- Shared by several procedures, so each table has one owner that writes it and any number of
-- readers:
--   payops.security_measures  security:implement-measures (blocks and rate limits at the edge, each
--                             with why, who and when it ends); security:contain-threat adds to it.
--   payops.security_scans     security:vulnerability-scan, security:penetration-test, and the
--                             assessor's own dates (external scans, penetration tests by people),
--                             which the PCI DSS controls 11.3 and 11.4 read.
--   payops.incidents          incident:open / update / resolve and emergency:response-protocol;
--                             drills are exercise incidents (the PCI DSS control 12.10 reads them).
--   payops.incident_events    each incident's timeline: runs, switch changes, alerts, pages,
--                             deployments, notes, status changes; each source event once.

CREATE TABLE IF NOT EXISTS payops.security_measures (
    id          bigserial   PRIMARY KEY,
    environment text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('block', 'rate_limit')),
    target      text        NOT NULL CHECK (length(btrim(target)) > 0),
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    reason      text        NOT NULL CHECK (length(btrim(reason)) > 0),
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    lifted_by   text,
    lifted_at   timestamptz,
    run_id      text,
    CHECK (expires_at IS NULL OR expires_at > created_at)
);
-- One measure in force per target: blocking an address twice is the same measure.
CREATE UNIQUE INDEX IF NOT EXISTS security_measures_active
    ON payops.security_measures (environment, kind, target) WHERE lifted_at IS NULL;

CREATE TABLE IF NOT EXISTS payops.security_scans (
    id           bigserial   PRIMARY KEY,
    environment  text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('vulnerability', 'hardening', 'penetration',
                                                      'external_asv', 'penetration_manual')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    performed_by text        NOT NULL,
    run_id       text,
    -- counts by severity: {"critical": 0, "high": 1, "medium": 3, "low": 0, "info": 2}
    summary      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    findings     jsonb       NOT NULL DEFAULT '[]'::jsonb,
    -- where the full report is kept (an S3 key, a vendor's report reference)
    report_ref   text
);
CREATE INDEX IF NOT EXISTS security_scans_latest
    ON payops.security_scans (environment, kind, started_at DESC);

CREATE TABLE IF NOT EXISTS payops.incidents (
    id              text        PRIMARY KEY CHECK (id ~ '^INC-[0-9]{8}-[0-9]{3,}$'),
    environment     text        NOT NULL,
    severity        text        NOT NULL CHECK (severity IN ('P0', 'P1', 'P2', 'P3')),
    status          text        NOT NULL DEFAULT 'open'
                                CHECK (status IN ('open', 'acknowledged', 'contained', 'resolved')),
    category        text        NOT NULL DEFAULT 'operational'
                                CHECK (category IN ('operational', 'security')),
    title           text        NOT NULL CHECK (length(btrim(title)) > 0),
    commander       text,
    exercise        boolean     NOT NULL DEFAULT false,
    alert_name      text,
    opened_by       text        NOT NULL,
    opened_at       timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    contained_at    timestamptz,
    resolved_at     timestamptz,
    summary         text,
    detail          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CHECK (acknowledged_at IS NULL OR acknowledged_at >= opened_at),
    CHECK (contained_at IS NULL OR contained_at >= opened_at),
    CHECK (resolved_at IS NULL OR resolved_at >= opened_at),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS incidents_open
    ON payops.incidents (environment, opened_at) WHERE status <> 'resolved';

CREATE TABLE IF NOT EXISTS payops.incident_events (
    id          bigserial   PRIMARY KEY,
    incident_id text        NOT NULL REFERENCES payops.incidents (id),
    at          timestamptz NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('status', 'run', 'switch', 'alert', 'page',
                                                     'deployment', 'note', 'containment', 'evidence')),
    actor       text,
    summary     text        NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- the event's identity at its source (a run id, a switch_events id, an alert fingerprint and
    -- start), so that gathering the timeline twice records each once
    source_ref  text        NOT NULL,
    UNIQUE (incident_id, kind, source_ref)
);
CREATE INDEX IF NOT EXISTS incident_events_timeline ON payops.incident_events (incident_id, at);
