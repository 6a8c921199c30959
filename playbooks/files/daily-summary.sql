-- reports:daily-summary: the day's figures from the database in one statement, aggregated here
-- (GROUP BY, percentile_cont), never fetched as rows. Parameters: start and upto (the day in
-- UTC; upto is now for a day still running), tz (payops_timezone), test_users (payments left
-- out, comma-separated: test:payment-flow's user, benchmarks), environment, pending_minutes.
WITH day_payments AS (
    SELECT id, status, amount, currency, created_at
    FROM public.payments
    WHERE created_at >= %(start)s::timestamptz AND created_at < %(upto)s::timestamptz
      AND NOT (user_id = ANY (string_to_array(%(test_users)s, ',')::uuid[]))
),
callback AS (
    SELECT extract(epoch FROM min(w.received_at) - p.created_at)::float8 AS seconds
    FROM day_payments AS p
    JOIN payops.webhook_receipts AS w ON w.payment_id = p.id AND w.source = 'webhook'
    GROUP BY p.id, p.created_at
)
SELECT json_build_object(
    'counts', (SELECT json_build_object(
        'total', count(*),
        'completed', count(*) FILTER (WHERE status = 'completed'),
        'failed', count(*) FILTER (WHERE status = 'failed'),
        'pending', count(*) FILTER (WHERE status = 'pending')) FROM day_payments),
    'test_payments', (SELECT count(*) FROM public.payments
                      WHERE created_at >= %(start)s::timestamptz AND created_at < %(upto)s::timestamptz
                        AND user_id = ANY (string_to_array(%(test_users)s, ',')::uuid[])),
    'completed_by_currency', (SELECT coalesce(json_object_agg(currency, cents), '{}'::json) FROM (
        SELECT currency, sum(amount)::bigint AS cents FROM day_payments WHERE status = 'completed'
        GROUP BY currency) AS completed),
    'refunded_by_currency', (SELECT coalesce(json_object_agg(currency, cents), '{}'::json) FROM (
        SELECT t.currency, sum(t.amount)::bigint AS cents
        FROM public.payment_transactions AS t JOIN public.payments AS p ON p.id = t.payment_id
        WHERE t.transaction_type = 'refund' AND t.status = 'completed'
          AND t.created_at >= %(start)s::timestamptz AND t.created_at < %(upto)s::timestamptz
          AND NOT (p.user_id = ANY (string_to_array(%(test_users)s, ',')::uuid[]))
        GROUP BY t.currency) AS refunded),
    'failures', (SELECT coalesce(json_agg(json_build_object('category', category, 'count', n)
                                          ORDER BY n DESC, category), '[]'::json) FROM (
        SELECT coalesce(e.category, 'uncategorised') AS category, count(*) AS n
        FROM day_payments AS p
        LEFT JOIN LATERAL (SELECT error_category AS category FROM public.payment_errors
                           WHERE payment_id = p.id ORDER BY created_at LIMIT 1) AS e ON true
        WHERE p.status = 'failed' GROUP BY 1) AS failures),
    'hourly', (SELECT coalesce(json_agg(json_build_object('hour', hour, 'completed', completed, 'failed', failed)
                                        ORDER BY hour), '[]'::json) FROM (
        SELECT extract(hour FROM created_at AT TIME ZONE %(tz)s)::int AS hour,
               count(*) FILTER (WHERE status = 'completed') AS completed,
               count(*) FILTER (WHERE status = 'failed') AS failed
        FROM day_payments GROUP BY 1) AS hours),
    'callback_latency', (SELECT json_build_object(
        'count', count(*),
        'p50', percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
        'p95', percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds)) FROM callback),
    'security', (SELECT json_build_object(
        'total', count(*),
        'incidents', count(*) FILTER (WHERE severity IN ('high', 'critical')))
        FROM public.security_events
        WHERE created_at >= %(start)s::timestamptz AND created_at < %(upto)s::timestamptz),
    'switch_events', (SELECT coalesce(json_agg(json_build_object(
            'at', to_char(set_at AT TIME ZONE %(tz)s, 'HH24:MI:SS'), 'switch', name,
            'state', CASE WHEN enabled THEN 'on' ELSE 'off' END, 'by', set_by, 'reason', reason)
            ORDER BY set_at, id), '[]'::json)
        FROM payops.switch_events
        WHERE set_at >= %(start)s::timestamptz AND set_at < %(upto)s::timestamptz),
    'deployments', (SELECT coalesce(json_agg(json_build_object(
            'at', to_char(started_at AT TIME ZONE %(tz)s, 'HH24:MI:SS'), 'kind', kind, 'release', release,
            'outcome', outcome, 'by', operator) ORDER BY started_at), '[]'::json)
        FROM payops.deployments
        WHERE environment = %(environment)s
          AND started_at >= %(start)s::timestamptz AND started_at < %(upto)s::timestamptz),
    -- Open for tomorrow: as the platform stands now, whatever day they were made.
    'pending_over', (SELECT count(*) FROM public.payments
                     WHERE status = 'pending' AND created_at < now() - make_interval(mins => %(pending_minutes)s)
                       AND NOT (user_id = ANY (string_to_array(%(test_users)s, ',')::uuid[])))
) AS summary
