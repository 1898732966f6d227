-- Browser sessions: an opaque id in a `__Host-` cookie, stored only as its SHA-256 hash.
-- Redis caches active rows under `session:{hash}`; this table is the record, so a flushed
-- or unreachable Redis logs nobody out.
create table browser_sessions (
    id                  uuid primary key,
    token_hash          bytea not null unique check (length(token_hash) = 32),
    user_id             uuid not null references users (id),
    tenant_id           uuid not null references tenants (id),
    -- The user's revocation version at login: the session is rejected once the user's
    -- version is higher (password change, disabled account, removed membership, logout-all).
    revocation_version  bigint not null,
    created_at          timestamptz not null default now(),
    last_seen_at        timestamptz not null default now(),
    -- The idle timeout, moved forward while the session is used.
    idle_expires_at     timestamptz not null,
    -- The absolute lifetime: the session is rejected after it however often it is used.
    expires_at          timestamptz not null,
    user_agent          text check (length(user_agent) <= 512),
    ip                  text check (length(ip) <= 64),
    revoked_at          timestamptz,
    revoked_reason      text check (revoked_reason in ('logout', 'revoked', 'logout_all', 'account_change'))
);
create index browser_sessions_user_idx on browser_sessions (user_id) where revoked_at is null;
