-- payops 0001: the baseline, the payops schema as payops used it before it had migrations.
--
-- Every statement adopts what is already there (IF NOT EXISTS, CREATE OR REPLACE, ON CONFLICT DO
-- NOTHING): a database where earlier payops versions created these tables on first use is brought
-- under the migrations unchanged. Later migrations are plain DDL.
--
-- Runs in one transaction (payops:install, plugins/module_utils/payops_migrations.py).

CREATE SCHEMA IF NOT EXISTS payops;
COMMENT ON SCHEMA payops IS 'payops: operations automation (switches, webhook receipts, deployments, audit); installed by payops:install';

-- The installer's own record: which of these files ran, with which SHA-256 (payops:install).
CREATE TABLE IF NOT EXISTS payops.schema_versions (
    name         text PRIMARY KEY,
    sha256       text NOT NULL,
    release      text,
    applied_by   text,
    run_id       text,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    duration_ms  integer
);

-- The same record for the app's release migrations (deploy:production).
CREATE TABLE IF NOT EXISTS payops.schema_migrations (
    name         text PRIMARY KEY,
    sha256       text NOT NULL,
    release      text,
    applied_by   text,
    run_id       text,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    duration_ms  integer
);

-- ---------------------------------------------------------------------------------------------
-- The switches: payment:emergency-stop, maintenance:enable, security:lockdown
-- ---------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS payops.switches (
    name         text PRIMARY KEY CHECK (name IN ('payments_stopped', 'maintenance', 'lockdown')),
    enabled      boolean NOT NULL DEFAULT false,
    reason       text,
    set_by       text,
    set_at       timestamptz,
    environment  text
);

INSERT INTO payops.switches (name, enabled) VALUES
    ('payments_stopped', false), ('maintenance', false), ('lockdown', false)
ON CONFLICT (name) DO NOTHING;

CREATE TABLE IF NOT EXISTS payops.switch_events (
    id       bigserial PRIMARY KEY,
    name     text NOT NULL,
    enabled  boolean NOT NULL,
    reason   text,
    set_by   text,
    set_at   timestamptz NOT NULL DEFAULT now(),
    run_id   text
);
CREATE INDEX IF NOT EXISTS switch_events_name_set_at_idx ON payops.switch_events (name, set_at);

-- ---------------------------------------------------------------------------------------------
-- Gateway results: each (paylink id, status) recorded once
-- ---------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS payops.webhook_receipts (
    id                       bigserial PRIMARY KEY,
    paylink_id               text NOT NULL,
    status                   text NOT NULL,
    external_transaction_id  text,
    payment_id               uuid REFERENCES public.payments (id),
    source                   text NOT NULL CHECK (source IN ('webhook', 'reconcile')),
    body                     jsonb,
    received_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (paylink_id, status)
);
CREATE INDEX IF NOT EXISTS webhook_receipts_payment_id_idx ON payops.webhook_receipts (payment_id);

-- The one place where a gateway result (a callback, or a reconciliation against getStatus) changes
-- a payment. Exactly once per (paylink id, status): the receipt's unique key decides, and a
-- concurrent identical call waits on the first one's insert and then finds the row. Locks are
-- taken in one order (receipt, payment, enrollments), so concurrent calls cannot deadlock.
-- Returns 'applied', 'duplicate' (already recorded) or 'unmatched' (no payment has that
-- externalTransactionID; recorded for follow-up).
CREATE OR REPLACE FUNCTION payops.apply_gateway_result(
    p_paylink_id text,
    p_status text,
    p_external_transaction_id text,
    p_body jsonb,
    p_source text
) RETURNS text
LANGUAGE plpgsql
-- It runs with its owner's rights, so that the app's role needs EXECUTE on it and nothing on the
-- tables it writes (0003); the search path is pinned, every name in it is qualified.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_status      text := upper(btrim(p_status));
    v_receipt_id  bigint;
    v_payment     public.payments%ROWTYPE;
    v_new_status  text;
BEGIN
    IF p_paylink_id IS NULL OR btrim(p_paylink_id) = '' THEN
        RAISE EXCEPTION 'apply_gateway_result: paylink id is required' USING ERRCODE = '22023';
    END IF;
    IF v_status IS NULL OR v_status NOT IN ('SUCCESS', 'FAILURE') THEN
        RAISE EXCEPTION 'apply_gateway_result: status must be SUCCESS or FAILURE, got %', p_status
            USING ERRCODE = '22023';
    END IF;

    INSERT INTO payops.webhook_receipts (paylink_id, status, external_transaction_id, source, body)
    VALUES (p_paylink_id, v_status, p_external_transaction_id, p_source, p_body)
    ON CONFLICT (paylink_id, status) DO NOTHING
    RETURNING id INTO v_receipt_id;

    IF v_receipt_id IS NULL THEN
        RETURN 'duplicate';
    END IF;

    SELECT * INTO v_payment
      FROM public.payments
     WHERE transaction_reference = p_external_transaction_id
       FOR UPDATE;

    IF NOT FOUND THEN
        INSERT INTO public.payment_errors (payment_id, error_category, severity, message, details)
        VALUES (NULL, 'unmatched_callback', 'high', 'unmatched callback',
                jsonb_build_object('paylinkID', p_paylink_id, 'status', v_status,
                                   'externalTransactionID', p_external_transaction_id,
                                   'source', p_source));
        RETURN 'unmatched';
    END IF;

    UPDATE payops.webhook_receipts SET payment_id = v_payment.id WHERE id = v_receipt_id;

    v_new_status := CASE v_status WHEN 'SUCCESS' THEN 'completed' ELSE 'failed' END;

    -- A completed payment never goes back. A SUCCESS after a FAILURE (the customer tried again on
    -- the same paylink) is money that moved, so it completes a failed payment.
    IF v_payment.status = 'completed'
       OR (v_payment.status = 'failed' AND v_new_status = 'failed') THEN
        INSERT INTO public.payment_errors (payment_id, error_category, severity, message, details)
        VALUES (v_payment.id, 'conflicting_callback', 'high',
                format('gateway reported %s for a payment already %s', v_status, v_payment.status),
                jsonb_build_object('paylinkID', p_paylink_id, 'status', v_status, 'source', p_source));
        RETURN 'duplicate';
    END IF;

    UPDATE public.payments
       SET status = v_new_status,
           gateway_response = coalesce(gateway_response, '{}'::jsonb)
                              || coalesce(p_body, '{}'::jsonb)
                              || jsonb_build_object('paylinkID', p_paylink_id,
                                                    'result_source', p_source,
                                                    'result_at', now()),
           updated_at = now()
     WHERE id = v_payment.id;

    UPDATE public.enrollments
       SET payment_status = v_new_status,
           status = CASE WHEN v_new_status = 'completed' THEN 'approved' ELSE status END,
           updated_at = now()
     WHERE payment_id = v_payment.id;

    INSERT INTO public.payment_transactions
        (payment_id, transaction_type, amount, currency, status, gateway_transaction_id,
         external_transaction_id, gateway_response)
    VALUES (v_payment.id, 'payment', v_payment.amount, v_payment.currency, v_new_status,
            p_paylink_id, p_external_transaction_id, p_body);

    IF v_new_status = 'failed' THEN
        INSERT INTO public.payment_errors (payment_id, error_category, severity, message, details)
        VALUES (v_payment.id, 'payment_failed', 'medium', 'gateway reported FAILURE',
                jsonb_build_object('paylinkID', p_paylink_id, 'source', p_source,
                                   'responseCode', p_body ->> 'responseCode'));
    END IF;

    RETURN 'applied';
END;
$$;

-- PostgreSQL lets every role execute a new function: not this one (0003 gives the app's role EXECUTE).
REVOKE ALL ON FUNCTION payops.apply_gateway_result(text, text, text, jsonb, text) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- Deployments: deploy:production, deploy:hotfix, deploy:rollback, hotfix:prepare, the validators
-- ---------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS payops.deployments (
    run_id       text PRIMARY KEY,
    environment  text NOT NULL,
    kind         text NOT NULL,
    release      text NOT NULL,
    version      text,
    operator     text,
    reason       text,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    outcome      text NOT NULL,
    detail       text,
    phases       jsonb,
    hosts        jsonb,
    migrations   jsonb
);

-- One deployment at a time per environment (betaskill.payops.payops_deploy_lock).
CREATE TABLE IF NOT EXISTS payops.deploy_locks (
    environment   text PRIMARY KEY,
    run_id        text NOT NULL,
    release       text,
    operator      text,
    controller    text,
    acquired_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS payops.hotfixes (
    id                  bigserial PRIMARY KEY,
    environment         text NOT NULL,
    release             text NOT NULL,
    version             text,
    reason              text NOT NULL,
    operator            text,
    run_id              text NOT NULL,
    artefacts           jsonb,
    pending_migrations  jsonb,
    prepared_at         timestamptz NOT NULL DEFAULT now()
);

-- Each stage's verdict of the post-deployment validator (reports:deployment-summary reads them).
CREATE TABLE IF NOT EXISTS payops.deployment_validations (
    id                 bigserial PRIMARY KEY,
    deployment_run_id  text NOT NULL,
    validator_run_id   text NOT NULL,
    environment        text NOT NULL,
    stage              text NOT NULL,
    verdict            text NOT NULL,
    summary            text,
    checked_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS deployment_validations_run_idx ON payops.deployment_validations (deployment_run_id);
