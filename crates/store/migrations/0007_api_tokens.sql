-- Personal API tokens: long-lived bearer tokens for scripts, limited to one tenant and a
-- scope. The token is shown once and stored only as its SHA-256 hash.
create table api_tokens (
    id            uuid primary key,
    user_id       uuid not null references users (id),
    tenant_id     uuid not null references tenants (id),
    name          text not null check (length(name) between 1 and 100),
    scope         text not null check (scope in ('read', 'write', 'admin')),
    token_hash    bytea not null unique check (length(token_hash) = 32),
    created_at    timestamptz not null default now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
create index api_tokens_owner_idx on api_tokens (user_id, tenant_id, created_at);
