-- OpenID Connect login. Each tenant configures its own providers; a provider signs people
-- in to that tenant only.
create table oidc_providers (
    id             uuid primary key,
    tenant_id      uuid not null references tenants (id),
    display_name   text not null check (length(display_name) between 1 and 100),
    issuer_url     text not null check (length(issuer_url) between 1 and 2000),
    client_id      text not null check (length(client_id) between 1 and 500),
    -- NOTE: the client secret is stored in plain text, not encrypted at rest, so anyone who
    -- can read this table can act as the tenant's client at its provider.
    client_secret  text not null check (length(client_secret) between 1 and 500),
    scopes         text[] not null,
    enabled        boolean not null default true,
    created_at     timestamptz not null default now(),
    unique (tenant_id, id)
);

-- A login in progress: what the callback needs to finish it. The state is stored only as
-- its SHA-256 hash, and a row is deleted when the callback uses it.
create table oidc_login_states (
    state_hash     bytea primary key check (length(state_hash) = 32),
    provider_id    uuid not null references oidc_providers (id) on delete cascade,
    pkce_verifier  text not null,
    nonce          text not null,
    redirect_uri   text not null,
    return_path    text,
    expires_at     timestamptz not null
);
create index oidc_login_states_expiry_idx on oidc_login_states (expires_at);

-- A person's identity at a provider: the issuer's `sub` claim, unique per provider.
create table oidc_identities (
    provider_id  uuid not null references oidc_providers (id) on delete cascade,
    subject      text not null,
    user_id      uuid not null references users (id),
    created_at   timestamptz not null default now(),
    primary key (provider_id, subject)
);
create index oidc_identities_user_idx on oidc_identities (user_id);

-- A provider identity whose e-mail address belongs to an existing account. It is linked
-- only when that account, signed in by its own means, presents the link token.
create table oidc_link_requests (
    token_hash   bytea primary key check (length(token_hash) = 32),
    provider_id  uuid not null references oidc_providers (id) on delete cascade,
    subject      text not null,
    user_id      uuid not null references users (id),
    expires_at   timestamptz not null
);
