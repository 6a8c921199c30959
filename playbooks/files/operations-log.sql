-- logs:update-operational: the day's entry of the operations log, in one statement. The summary
-- is aggregated here (switch changes, deployments, security incidents, and who ran what: from
-- payops.audit_trail when the run is audited there (from_table), else from the file trail's runs
-- (file_runs) read beside it); the
-- entry is written (or rewritten) and the note added once. Check mode rolls it back.
WITH switches AS (
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'at', to_char(set_at AT TIME ZONE %(tz)s, 'HH24:MI'), 'switch', name,
               'state', CASE WHEN enabled THEN 'on' ELSE 'off' END, 'by', set_by, 'reason', reason)
               ORDER BY set_at, id), '[]'::jsonb) AS items
      FROM payops.switch_events
     WHERE set_at >= %(start)s::timestamptz AND set_at < %(upto)s::timestamptz
),
deployments AS (
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'at', to_char(started_at AT TIME ZONE %(tz)s, 'HH24:MI'), 'kind', kind, 'release', release,
               'outcome', outcome, 'by', operator) ORDER BY started_at), '[]'::jsonb) AS items
      FROM payops.deployments
     WHERE environment = %(environment)s
       AND started_at >= %(start)s::timestamptz AND started_at < %(upto)s::timestamptz
),
trail_runs AS (
    SELECT coalesce(jsonb_agg(jsonb_build_object('operator', operator, 'what', what, 'runs', runs,
                                                 'failed', failed) ORDER BY runs DESC, what), '[]'::jsonb) AS items
      FROM (SELECT record ->> 'operator' AS operator,
                   coalesce(record ->> 'command', record ->> 'playbook') AS what,
                   count(*) AS runs, count(*) FILTER (WHERE record ->> 'result' <> 'successful') AS failed
              FROM payops.audit_trail
             WHERE recorded_at >= %(start)s::timestamptz AND recorded_at < %(upto)s::timestamptz
               AND record ->> 'event' = 'run_end'
             GROUP BY 1, 2) AS runs
),
summary AS (
    SELECT jsonb_build_object(
               'switches', switches.items, 'deployments', deployments.items,
               'runs', CASE WHEN %(from_table)s::boolean THEN trail_runs.items ELSE %(file_runs)s::jsonb END,
               'runs_from', CASE WHEN %(from_table)s::boolean THEN 'payops.audit_trail' ELSE 'the audit file' END,
               'security_incidents', (SELECT count(*) FROM public.security_events
                                       WHERE severity IN ('high', 'critical')
                                         AND created_at >= %(start)s::timestamptz
                                         AND created_at < %(upto)s::timestamptz)) AS content
      FROM switches, deployments, trail_runs
),
entry AS (
    INSERT INTO payops.operations_log (environment, day, summary, updated_by, run_id)
    SELECT %(environment)s, %(day)s::date, content, %(operator)s, %(run_id)s FROM summary
    ON CONFLICT (environment, day) DO UPDATE
       SET summary = EXCLUDED.summary, updated_by = EXCLUDED.updated_by, updated_at = now(),
           run_id = EXCLUDED.run_id
    RETURNING environment, day, summary
),
noted AS (
    INSERT INTO payops.operations_notes (environment, day, note, written_by)
    SELECT environment, day, %(note)s, %(operator)s FROM entry WHERE btrim(%(note)s) <> ''
    ON CONFLICT (environment, day, note) DO NOTHING
    RETURNING note, written_by, written_at
)
SELECT json_build_object(
    'summary', (SELECT summary FROM entry),
    'added', (SELECT count(*) FROM noted),
    'notes', (SELECT coalesce(json_agg(json_build_object(
                  'at', to_char(written_at AT TIME ZONE %(tz)s, 'HH24:MI'), 'by', written_by, 'note', note)
                  ORDER BY written_at), '[]'::json)
                FROM (SELECT note, written_by, written_at FROM payops.operations_notes
                       WHERE environment = %(environment)s AND day = %(day)s::date
                      UNION ALL SELECT note, written_by, written_at FROM noted) AS notes)
) AS entry
