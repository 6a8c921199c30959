-- payops 0003: the payops schema is closed to the app's public roles.
--
-- Supabase gives every database the roles anon (a visitor) and authenticated (a signed-in user),
-- which its REST API uses for requests from browsers, and service_role (the app's server side).
-- Nothing of payops may be reachable by PUBLIC, anon or authenticated. The app's server role gets
-- exactly what the contract needs (docs/database.md): read the switches, apply a gateway result.
--
-- PostgreSQL lets every role execute a new function unless told otherwise, and a per-schema default
-- cannot take that back; so every later migration that adds a function revokes it from PUBLIC
-- itself. The installer rolls back any migration that leaves something of payops open to these
-- roles (plugins/module_utils/payops_migrations.py).
--
-- Roles that this database does not have (a plain PostgreSQL, no Supabase) are skipped.

REVOKE ALL ON SCHEMA payops FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA payops FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA payops FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA payops FROM PUBLIC;

DO $$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = v_role) THEN
            EXECUTE format('REVOKE ALL ON SCHEMA payops FROM %I', v_role);
            EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA payops FROM %I', v_role);
            EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA payops FROM %I', v_role);
            EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA payops FROM %I', v_role);
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA payops REVOKE ALL ON TABLES FROM %I', v_role);
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA payops REVOKE ALL ON SEQUENCES FROM %I', v_role);
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA payops REVOKE ALL ON FUNCTIONS FROM %I', v_role);
        END IF;
    END LOOP;

    -- The app's server side (Supabase's service_role): the two things the contract gives it.
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT USAGE ON SCHEMA payops TO service_role;
        GRANT SELECT ON payops.switches TO service_role;
        GRANT EXECUTE ON FUNCTION payops.apply_gateway_result(text, text, text, jsonb, text) TO service_role;
    END IF;
END;
$$;
