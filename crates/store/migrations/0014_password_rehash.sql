-- Replacing a password hash with a stronger hash of the same password, after a login with
-- it, must not end the user's sessions. The rehash sets the transaction-local setting
-- tasklane.same_password to 'on', and the trigger then leaves the revocation version alone.
create or replace function bump_revocation_version_on_user_change() returns trigger language plpgsql as $$
begin
    if (old.disabled_at is null and new.disabled_at is not null)
        or (old.password_hash is distinct from new.password_hash
            and coalesce(current_setting('tasklane.same_password', true), '') <> 'on') then
        new.revocation_version := old.revocation_version + 1;
    end if;
    return new;
end $$;
