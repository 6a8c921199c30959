-- payops 0002: the payment stop holds in the database itself.
--
-- While the payments_stopped switch is on, no new pending payment can be written, whatever the app
-- does: the insert fails with SQLSTATE PS001 and the switch's reason. The app's own check of the
-- switch (docs/database.md, the contract) is the first layer; this is the one that does not depend
-- on the app's cooperation.
--
-- Money that moved is never refused: the trigger looks only at payments that become pending. A
-- gateway result for a payment created before the stop (payops.apply_gateway_result turning it
-- completed or failed) goes through.
--
-- FOR SHARE on the switch's row: a checkout that inserts while payment:emergency-stop is turning
-- the switch on waits for that change and then sees it, so no payment slips in between.

CREATE FUNCTION payops.refuse_payment_while_stopped() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_reason text;
BEGIN
    IF NEW.status IS DISTINCT FROM 'pending' OR (TG_OP = 'UPDATE' AND OLD.status = 'pending') THEN
        RETURN NEW;
    END IF;
    SELECT coalesce(nullif(btrim(reason), ''), 'no reason recorded') INTO v_reason
      FROM payops.switches
     WHERE name = 'payments_stopped' AND enabled
       FOR SHARE;
    IF FOUND THEN
        RAISE EXCEPTION 'payments are stopped (payops switch payments_stopped): %', v_reason
            USING ERRCODE = 'PS001',
                  HINT = 'No payment was created. Tell the customer payments are paused; payops system:recover lifts the stop.';
    END IF;
    RETURN NEW;
END;
$$;

-- A trigger function needs no EXECUTE to fire; nobody needs to call it.
REVOKE ALL ON FUNCTION payops.refuse_payment_while_stopped() FROM PUBLIC;

COMMENT ON FUNCTION payops.refuse_payment_while_stopped() IS
    'payops: refuses a new pending payment while payments_stopped is on (SQLSTATE PS001)';

-- Taking this trigger locks public.payments (SHARE ROW EXCLUSIVE) for the moment it takes:
-- payops:install runs it under a short lock_timeout and retries, so checkouts do not queue behind it.
CREATE TRIGGER payops_refuse_payment_while_stopped
    BEFORE INSERT OR UPDATE OF status ON public.payments
    FOR EACH ROW EXECUTE FUNCTION payops.refuse_payment_while_stopped();
