-- Invitations to join a tenant with a role. The token is shown to the inviter once and
-- stored only as its SHA-256 hash; accepting sets accepted_at, so each token works once.
create table invitations (
    id           uuid primary key,
    tenant_id    uuid not null references tenants (id),
    email        text not null,
    role         text not null check (role in ('owner', 'admin', 'member', 'viewer')),
    token_hash   bytea not null unique check (length(token_hash) = 32),
    invited_by   uuid not null references users (id),
    created_at   timestamptz not null default now(),
    expires_at   timestamptz not null,
    accepted_at  timestamptz,
    accepted_by  uuid references users (id)
);
create index invitations_tenant_idx on invitations (tenant_id, created_at);
