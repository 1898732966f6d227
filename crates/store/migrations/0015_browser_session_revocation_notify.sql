-- Announces the end of one browser session on the access channel, with the payload
-- 'session:{id}', so every hub node closes the live connections that the session's cookie
-- opened at once, not at the session's absolute expiry. Ends that raise the user's
-- revocation version (logout-all, password change) are also announced by user id.
create function notify_browser_session_revoked() returns trigger language plpgsql as $$
begin
    perform pg_notify('tasklane_access', 'session:' || new.id::text);
    return null;
end $$;

create trigger browser_session_revoked
    after update of revoked_at on browser_sessions
    for each row
    when (old.revoked_at is null and new.revoked_at is not null)
    execute function notify_browser_session_revoked();
