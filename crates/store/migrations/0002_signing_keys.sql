-- Ed25519 keys that sign access tokens when no key is configured (development). The newest
-- row signs; older rows still verify the tokens they signed.
create table signing_keys (
    kid              text primary key,
    private_key_pem  text not null,
    created_at       timestamptz not null default now()
);
