-- The sandbox database as a BetaSkill Supabase project has it before payops is installed: Supabase's
-- roles, a minimal Supabase `auth`, a few Supabase-internal schemas that backups must leave out, and
-- BetaSkill's tables (as its public migrations define them, reduced to what payops reads and writes).
-- payops' own schema is not here: `payops sandbox up` installs it afterwards with the migrations in
-- schema/migrations, the code payops:install runs (plugins/module_utils/payops_migrations.py).
--
-- Idempotent: `payops sandbox up` applies it, as a superuser, on every start. Only IF NOT EXISTS,
-- CREATE OR REPLACE and ON CONFLICT DO NOTHING; nothing here drops or rewrites data.
--
-- Money is integer cents (ZAR), as iKhokha's API carries it: payments.amount = 15000 is R150.00.

-- ---------------------------------------------------------------------------------------------
-- Supabase: roles (cluster-wide). anon and authenticated are what Supabase's REST API switches to
-- for a visitor and a signed-in user; service_role is the app's server side (it bypasses row level
-- security); authenticator is the login role that switches to them (NOINHERIT: it holds nothing of
-- its own). The sandbox's app connects as authenticator with role service_role, as a BetaSkill
-- server function does through Supabase; `payops sandbox up` sets authenticator's password.
-- ---------------------------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticator') THEN
        CREATE ROLE authenticator LOGIN NOINHERIT;
    END IF;
END;
$$;
GRANT anon, authenticated, service_role TO authenticator;

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

-- Supabase's grants on public: every table to its three API roles (BetaSkill's row level security
-- policies, not modelled here, are what narrows anon and authenticated).
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Seed data (fixed ids, never overwritten)
-- ---------------------------------------------------------------------------------------------
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
