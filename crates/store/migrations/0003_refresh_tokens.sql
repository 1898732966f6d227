-- Refresh tokens rotate on every use. All tokens descended from one login form a family;
-- presenting a token that was already rotated revokes the whole family.
create table refresh_token_families (
    id              uuid primary key,
    user_id         uuid not null references users (id),
    tenant_id       uuid not null references tenants (id),
    created_at      timestamptz not null default now(),
    -- The absolute session lifetime: no token of the family is accepted after it.
    expires_at      timestamptz not null,
    revoked_at      timestamptz,
    revoked_reason  text check (revoked_reason in ('logout', 'reuse', 'logout_all', 'account_change'))
);
create index refresh_token_families_user_idx on refresh_token_families (user_id) where revoked_at is null;

create table refresh_tokens (
    id          uuid primary key,
    family_id   uuid not null references refresh_token_families (id) on delete cascade,
    -- SHA-256 of the token; the token itself is never stored.
    token_hash  bytea not null unique check (length(token_hash) = 32),
    parent_id   uuid references refresh_tokens (id),
    created_at  timestamptz not null default now(),
    -- The idle timeout: a token unused until then is rejected.
    expires_at  timestamptz not null,
    rotated_at  timestamptz
);
create index refresh_tokens_parent_idx on refresh_tokens (parent_id);
