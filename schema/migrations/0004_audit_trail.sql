-- payops 0004: the audit trail in PostgreSQL (docs/audit.md).
--
-- The betaskill.payops.audit callback appends one row per event through payops.audit_append, one
-- round trip and one commit per event. The rows make one hash chain whoever writes them: the
-- function takes a transaction advisory lock, reads the head, numbers the row (seq, gapless),
-- stamps it with the database's clock and hashes it in SQL:
--
--   hash = sha256(prev || '\n' || seq || '\n' || recorded_at || '\n' || record)
--
-- where recorded_at is payops.audit_time(recorded_at) (UTC, microseconds, fixed format) and record
-- is the event's JSON exactly as the callback sent it (type json keeps the text). The first row's
-- prev is 64 zeros. plugins/module_utils/payops_audit.py computes the same hash to verify.
--
-- payops.audit_head holds the last seq and hash: appends do not search the table, the chain goes
-- on after old months are archived and pruned, and rows removed from the end do not match it.
-- Neither is proof against the database's owner, who can rewrite both: anchors of the head in
-- S3 under Object Lock are (audit:anchor, audit:verify).
--
-- The table refuses UPDATE, DELETE and TRUNCATE. Rows leave it only through payops.audit_prune,
-- and only when a verified archive in S3 holds them (audit:archive).
--
-- The callback's role needs nothing but EXECUTE on payops.audit_append: payops_audit_writer is
-- that role (NOLOGIN; grant it to the login the callback's DSN names).

CREATE TABLE IF NOT EXISTS payops.audit_trail (
    seq         bigint      PRIMARY KEY CHECK (seq > 0),
    recorded_at timestamptz NOT NULL,
    prev        text        NOT NULL CHECK (prev ~ '^[0-9a-f]{64}$'),
    hash        text        NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),
    record      json        NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_trail_recorded_at ON payops.audit_trail (recorded_at);

CREATE TABLE IF NOT EXISTS payops.audit_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq      bigint  NOT NULL,
    hash     text    NOT NULL
);
INSERT INTO payops.audit_head (seq, hash) VALUES (0, repeat('0', 64)) ON CONFLICT DO NOTHING;

-- One row per closed month archived to S3 (audit:archive): where, what it holds, until when the
-- bucket keeps it, and when it was read back and found to chain on from the month before.
CREATE TABLE IF NOT EXISTS payops.audit_archives (
    month        date        PRIMARY KEY CHECK (extract(day FROM month) = 1),
    first_seq    bigint      NOT NULL,
    last_seq     bigint      NOT NULL CHECK (last_seq >= first_seq),
    last_hash    text        NOT NULL,
    row_count    bigint      NOT NULL,
    object_key   text        NOT NULL,
    version_id   text,
    sha256       text        NOT NULL,
    retain_until timestamptz NOT NULL,
    archived_at  timestamptz NOT NULL DEFAULT now(),
    verified_at  timestamptz
);

CREATE OR REPLACE FUNCTION payops.audit_time(at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;

CREATE OR REPLACE FUNCTION payops.audit_hash(prev text, seq bigint, recorded_at text, record text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT encode(sha256(convert_to(prev || E'\n' || seq::text || E'\n' || recorded_at || E'\n' || record, 'UTF8')), 'hex') $$;

CREATE OR REPLACE FUNCTION payops.audit_append(entry json)
RETURNS TABLE (seq bigint, hash text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_head payops.audit_head%ROWTYPE;
    v_at   timestamptz;
    v_hash text;
BEGIN
    IF json_typeof(entry) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'payops.audit_append takes one JSON object, got %', coalesce(json_typeof(entry), 'NULL')
            USING ERRCODE = '22023';
    END IF;
    -- One chain for every writer, on every controller: one append at a time.
    PERFORM pg_advisory_xact_lock(hashtextextended('payops.audit_trail', 0));
    SELECT * INTO v_head FROM payops.audit_head;
    v_at := clock_timestamp();
    v_hash := payops.audit_hash(v_head.hash, v_head.seq + 1, payops.audit_time(v_at), entry::text);
    INSERT INTO payops.audit_trail (seq, recorded_at, prev, hash, record)
    VALUES (v_head.seq + 1, v_at, v_head.hash, v_hash, entry);
    UPDATE payops.audit_head SET seq = v_head.seq + 1, hash = v_hash;
    RETURN QUERY SELECT v_head.seq + 1, v_hash;
END;
$$;

CREATE OR REPLACE FUNCTION payops.audit_trail_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('payops.audit_pruning', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'payops.audit_trail is append-only: % refused', TG_OP
        USING ERRCODE = 'PA001',
              HINT = 'rows leave the trail only through audit:archive, once a verified archive holds them';
END;
$$;

DROP TRIGGER IF EXISTS payops_audit_trail_append_only ON payops.audit_trail;
CREATE TRIGGER payops_audit_trail_append_only
    BEFORE UPDATE OR DELETE ON payops.audit_trail
    FOR EACH ROW EXECUTE FUNCTION payops.audit_trail_guard();
DROP TRIGGER IF EXISTS payops_audit_trail_no_truncate ON payops.audit_trail;
CREATE TRIGGER payops_audit_trail_no_truncate
    BEFORE TRUNCATE ON payops.audit_trail
    FOR EACH STATEMENT EXECUTE FUNCTION payops.audit_trail_guard();

-- Remove the rows up to through_seq, which a verified archive must hold; returns how many.
CREATE OR REPLACE FUNCTION payops.audit_prune(through_seq bigint) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count bigint;
BEGIN
    IF NOT EXISTS (SELECT FROM payops.audit_archives
                    WHERE verified_at IS NOT NULL AND first_seq <= through_seq AND last_seq >= through_seq) THEN
        RAISE EXCEPTION 'no verified archive holds audit row %: nothing removed', through_seq
            USING ERRCODE = 'PA002';
    END IF;
    IF EXISTS (SELECT FROM payops.audit_trail t
                WHERE t.seq <= through_seq
                  AND NOT EXISTS (SELECT FROM payops.audit_archives a
                                   WHERE a.verified_at IS NOT NULL AND t.seq BETWEEN a.first_seq AND a.last_seq)) THEN
        RAISE EXCEPTION 'audit rows up to % are not all in verified archives: nothing removed', through_seq
            USING ERRCODE = 'PA002';
    END IF;
    PERFORM set_config('payops.audit_pruning', 'on', true);
    DELETE FROM payops.audit_trail WHERE seq <= through_seq;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM set_config('payops.audit_pruning', 'off', true);
    RETURN v_count;
END;
$$;

REVOKE ALL ON FUNCTION payops.audit_time(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION payops.audit_hash(text, bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION payops.audit_append(json) FROM PUBLIC;
REVOKE ALL ON FUNCTION payops.audit_trail_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION payops.audit_prune(bigint) FROM PUBLIC;
REVOKE ALL ON payops.audit_trail, payops.audit_head, payops.audit_archives FROM PUBLIC;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'payops_audit_writer') THEN
        CREATE ROLE payops_audit_writer NOLOGIN;
    END IF;
END;
$$;
GRANT USAGE ON SCHEMA payops TO payops_audit_writer;
GRANT EXECUTE ON FUNCTION payops.audit_append(json) TO payops_audit_writer;
