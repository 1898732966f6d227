-- Every access token carries the user's revocation version from when it was issued; a
-- token with an older version is rejected. The triggers below bump the version on every
-- change that must end existing sessions, so no code path can forget to.
alter table users add column revocation_version bigint not null default 0;

create function bump_revocation_version_on_user_change() returns trigger language plpgsql as $$
begin
    if (old.disabled_at is null and new.disabled_at is not null)
        or old.password_hash is distinct from new.password_hash then
        new.revocation_version := old.revocation_version + 1;
    end if;
    return new;
end $$;

create trigger users_bump_revocation_version
    before update of disabled_at, password_hash on users
    for each row execute function bump_revocation_version_on_user_change();

create function bump_revocation_version_on_membership_removal() returns trigger language plpgsql as $$
begin
    update users set revocation_version = revocation_version + 1 where id = old.user_id;
    return null;
end $$;

create trigger memberships_bump_revocation_version
    after delete on memberships
    for each row execute function bump_revocation_version_on_membership_removal();

-- Processes cache each user's access (revocation version, disabled flag, roles) and drop a
-- user's entry when this channel names them. NOTIFY is delivered at commit, so a listener
-- never sees a change before it is visible.
create function notify_access_change() returns trigger language plpgsql as $$
begin
    if tg_table_name = 'users' then
        perform pg_notify('tasklane_access', new.id::text);
    elsif tg_op = 'DELETE' then
        perform pg_notify('tasklane_access', old.user_id::text);
    else
        perform pg_notify('tasklane_access', new.user_id::text);
        if tg_op = 'UPDATE' and old.user_id <> new.user_id then
            perform pg_notify('tasklane_access', old.user_id::text);
        end if;
    end if;
    return null;
end $$;

create trigger users_notify_access_change
    after update on users
    for each row
    when (old.revocation_version is distinct from new.revocation_version
          or old.disabled_at is distinct from new.disabled_at)
    execute function notify_access_change();

create trigger memberships_notify_access_change
    after insert or update or delete on memberships
    for each row execute function notify_access_change();
