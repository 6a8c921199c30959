-- The sandbox database: BetaSkill's tables (as its public migrations define them, reduced to what
-- payops reads and writes), a minimal Supabase `auth`, a few Supabase-internal schemas that backups
-- must leave out, and payops' own schema.
--
-- Idempotent: `payops sandbox up` applies it, as a superuser, on every start. Only IF NOT EXISTS,
-- CREATE OR REPLACE and ON CONFLICT DO NOTHING; nothing here drops or rewrites data.
--
-- Money is integer cents (ZAR), as iKhokha's API carries it: payments.amount = 15000 is R150.00.

-- ---------------------------------------------------------------------------------------------
-- Supabase: auth (minimal; a lockdown revokes sessions through these tables)
-- ---------------------------------------------------------------------------------------------
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE IF NOT EXISTS auth.users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email       text UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS auth.sessions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    not_after   timestamptz
);
CREATE INDEX IF NOT EXISTS sessions_user_id_idx ON auth.sessions (user_id);

CREATE TABLE IF NOT EXISTS auth.refresh_tokens (
    id          bigserial PRIMARY KEY,
    token       text NOT NULL UNIQUE,
    user_id     uuid REFERENCES auth.users (id) ON DELETE CASCADE,
    session_id  uuid REFERENCES auth.sessions (id) ON DELETE CASCADE,
    revoked     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS refresh_tokens_session_id_idx ON auth.refresh_tokens (session_id);

-- ---------------------------------------------------------------------------------------------
-- Supabase-internal schemas: present so that backups can prove they exclude them.
-- ---------------------------------------------------------------------------------------------
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE TABLE IF NOT EXISTS extensions.sandbox_marker (
    name  text PRIMARY KEY,
    note  text
);

CREATE SCHEMA IF NOT EXISTS realtime;
CREATE TABLE IF NOT EXISTS realtime.subscription (
    id            bigserial PRIMARY KEY,
    subscription_id uuid NOT NULL DEFAULT gen_random_uuid(),
    entity        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE SCHEMA IF NOT EXISTS vault;
CREATE TABLE IF NOT EXISTS vault.secrets (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text UNIQUE,
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE SCHEMA IF NOT EXISTS storage;
CREATE TABLE IF NOT EXISTS storage.buckets (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    public      boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS storage.objects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    bucket_id   text REFERENCES storage.buckets (id),
    name        text NOT NULL,
    owner       uuid,
    metadata    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (bucket_id, name)
);

-- ---------------------------------------------------------------------------------------------
-- BetaSkill: public
-- ---------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.courses (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title        text NOT NULL,
    price        integer NOT NULL CHECK (price >= 0),
    currency     text NOT NULL DEFAULT 'ZAR',
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN public.courses.price IS 'integer cents';

CREATE TABLE IF NOT EXISTS public.payments (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                uuid NOT NULL,
    course_id              uuid NOT NULL REFERENCES public.courses (id),
    amount                 integer NOT NULL CHECK (amount > 0),
    currency               text NOT NULL DEFAULT 'ZAR',
    status                 text NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'completed', 'failed')),
    payment_method         text NOT NULL DEFAULT 'card',
    transaction_reference  text NOT NULL UNIQUE,
    payment_gateway        text NOT NULL DEFAULT 'ikhokha',
    gateway_response       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN public.payments.amount IS 'integer cents, as sent to iKhokha';
COMMENT ON COLUMN public.payments.transaction_reference IS 'iKhokha externalTransactionID (SKILL-<epoch ms>-<random>)';
CREATE INDEX IF NOT EXISTS payments_user_id_idx ON public.payments (user_id);
CREATE INDEX IF NOT EXISTS payments_pending_created_idx ON public.payments (created_at)
    WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS public.enrollments (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL,
    course_id       uuid NOT NULL REFERENCES public.courses (id),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'approved', 'rejected')),
    payment_status  text NOT NULL DEFAULT 'pending'
                    CHECK (payment_status IN ('pending', 'completed', 'failed', 'cancelled', 'refunded')),
    payment_id      uuid REFERENCES public.payments (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS enrollments_payment_id_idx ON public.enrollments (payment_id);
CREATE INDEX IF NOT EXISTS enrollments_user_course_idx ON public.enrollments (user_id, course_id);

CREATE TABLE IF NOT EXISTS public.payment_transactions (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    payment_id               uuid NOT NULL REFERENCES public.payments (id),
    transaction_type         text NOT NULL DEFAULT 'payment',
    amount                   integer NOT NULL,
    currency                 text NOT NULL DEFAULT 'ZAR',
    status                   text NOT NULL,
    gateway_transaction_id   text,
    external_transaction_id  text,
    gateway_response         jsonb,
    created_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS payment_transactions_payment_id_idx ON public.payment_transactions (payment_id);

CREATE TABLE IF NOT EXISTS public.payment_errors (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    payment_id      uuid REFERENCES public.payments (id),
    error_category  text NOT NULL,
    severity        text NOT NULL DEFAULT 'medium'
                    CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    message         text NOT NULL,
    details         jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS payment_errors_created_idx ON public.payment_errors (created_at);

CREATE TABLE IF NOT EXISTS public.security_events (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_type  text NOT NULL,
    severity    text NOT NULL DEFAULT 'medium'
                CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    source_ip   text,
    user_id     uuid,
    details     jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS security_events_created_idx ON public.security_events (created_at);

CREATE TABLE IF NOT EXISTS public.audit_logs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid,
    action      text NOT NULL,
    table_name  text,
    record_id   text,
    old_values  jsonb,
    new_values  jsonb,
    ip_address  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- payops
-- ---------------------------------------------------------------------------------------------
CREATE SCHEMA IF NOT EXISTS payops;

CREATE TABLE IF NOT EXISTS payops.switches (
    name         text PRIMARY KEY CHECK (name IN ('payments_stopped', 'maintenance', 'lockdown')),
    enabled      boolean NOT NULL DEFAULT false,
    reason       text,
    set_by       text,
    set_at       timestamptz,
    environment  text
);

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

-- ---------------------------------------------------------------------------------------------
-- Seed data (fixed ids, never overwritten)
-- ---------------------------------------------------------------------------------------------
INSERT INTO payops.switches (name, enabled) VALUES
    ('payments_stopped', false), ('maintenance', false), ('lockdown', false)
ON CONFLICT (name) DO NOTHING;

INSERT INTO public.courses (id, title, price) VALUES
    ('00000000-0000-4000-8000-000000000001', 'Python for Data Analysis', 49900),
    ('00000000-0000-4000-8000-000000000002', 'Web Development Bootcamp', 89900),
    ('00000000-0000-4000-8000-000000000003', 'Digital Marketing Essentials', 29900)
ON CONFLICT (id) DO NOTHING;

INSERT INTO auth.users (id, email) VALUES
    ('00000000-0000-4000-9000-000000000001', 'learner1@example.com'),
    ('00000000-0000-4000-9000-000000000002', 'learner2@example.com')
ON CONFLICT (id) DO NOTHING;

INSERT INTO auth.sessions (id, user_id, not_after) VALUES
    ('00000000-0000-4000-a000-000000000001', '00000000-0000-4000-9000-000000000001', now() + interval '7 days'),
    ('00000000-0000-4000-a000-000000000002', '00000000-0000-4000-9000-000000000002', now() + interval '7 days')
ON CONFLICT (id) DO NOTHING;

INSERT INTO auth.refresh_tokens (token, user_id, session_id) VALUES
    ('sandbox-refresh-token-1', '00000000-0000-4000-9000-000000000001', '00000000-0000-4000-a000-000000000001'),
    ('sandbox-refresh-token-2', '00000000-0000-4000-9000-000000000002', '00000000-0000-4000-a000-000000000002')
ON CONFLICT (token) DO NOTHING;

INSERT INTO extensions.sandbox_marker (name, note) VALUES
    ('internal', 'Supabase-internal schema: backups exclude it')
ON CONFLICT (name) DO NOTHING;

INSERT INTO vault.secrets (name, secret) VALUES ('sandbox_example', 'not-a-real-secret')
ON CONFLICT (name) DO NOTHING;

INSERT INTO storage.buckets (id, name) VALUES ('avatars', 'avatars')
ON CONFLICT (id) DO NOTHING;

INSERT INTO storage.objects (bucket_id, name, metadata) VALUES
    ('avatars', 'learner1.png', '{"size": 1024, "mimetype": "image/png"}'),
    ('avatars', 'learner2.png', '{"size": 2048, "mimetype": "image/png"}'),
    ('avatars', 'default.png', '{"size": 512, "mimetype": "image/png"}')
ON CONFLICT (bucket_id, name) DO NOTHING;
