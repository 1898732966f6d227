-- Optional TOTP second factor, one per user. The secret must be readable to check codes,
-- so it is stored as is; last_used_step makes each code usable once.
create table user_totp (
    user_id uuid primary key references users (id) on delete cascade,
    secret bytea not null,
    -- Null until the user proves with a first code that the authenticator app has it.
    confirmed_at timestamptz,
    -- Time step (Unix time / 30 s) of the last accepted code.
    last_used_step bigint,
    created_at timestamptz not null default now()
);
