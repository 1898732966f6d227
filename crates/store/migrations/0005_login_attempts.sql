-- Login attempts per throttling key ('account:<lower-case e-mail>' or 'ip:<address>') in
-- the current fixed window. Rows are upserted with one statement, so parallel attempts
-- are counted exactly.
create table login_attempts (
    key                text primary key,
    window_started_at  timestamptz not null,
    attempts           integer not null check (attempts >= 0)
);
