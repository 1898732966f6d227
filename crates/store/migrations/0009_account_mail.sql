-- E-mail verification, password reset and the mail that carries their tokens.

-- When the person proved they receive mail at `email`. Accounts that existed before
-- verification was introduced count as verified from their creation, so their owners keep
-- every right they had.
alter table users add column email_verified_at timestamptz;
update users set email_verified_at = created_at where email is not null;

-- Single-use tokens sent by e-mail. Each is stored only as its SHA-256 hash; using one sets
-- used_at, so it works once, and it stops working at expires_at.
create table account_tokens (
    token_hash  bytea primary key check (length(token_hash) = 32),
    user_id     uuid not null references users (id),
    purpose     text not null check (purpose in ('verify_email', 'password_reset')),
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    used_at     timestamptz
);
create index account_tokens_user_idx on account_tokens (user_id, purpose) where used_at is null;

-- Mail waiting for the email worker. The outbox event that announces a mail carries only its
-- id, because the body can contain a single-use token and outbox events also reach Kafka,
-- analytics and the audit queue. The worker clears the body once the SMTP server accepts it.
create table outgoing_mail (
    id          uuid primary key,
    user_id     uuid references users (id),
    recipient   text not null,
    subject     text not null,
    body        text,
    created_at  timestamptz not null default now(),
    sent_at     timestamptz
);
