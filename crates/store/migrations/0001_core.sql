-- Core schema. Every tenant-owned table has `tenant_id` and a `unique (tenant_id, id)`
-- key, and refers to other tenant-owned rows through composite foreign keys that include
-- the tenant, so the database itself rejects a row that points across tenants.
-- People, their credentials and sessions are global: one person may join several tenants.

create table tenants (
    id          uuid primary key,
    name        text not null,
    created_at  timestamptz not null default now()
);

create table users (
    id             uuid primary key,
    -- A placeholder user (an imported Jira person) has no e-mail and cannot log in.
    email          text,
    name           text not null,
    password_hash  text,
    disabled_at    timestamptz,
    created_at     timestamptz not null default now(),
    check (email is not null or password_hash is null)
);
create unique index users_email_key on users (lower(email)) where email is not null;

create table memberships (
    tenant_id   uuid not null references tenants (id),
    user_id     uuid not null references users (id),
    role        text not null check (role in ('owner', 'admin', 'member', 'viewer')),
    handle      text not null check (handle ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    -- Where an imported placeholder person came from, such as ('jira', 'jdoe').
    source      text,
    source_key  text,
    created_at  timestamptz not null default now(),
    primary key (tenant_id, user_id),
    unique (tenant_id, source, source_key)
);
create unique index memberships_handle_key on memberships (tenant_id, lower(handle));

create table teams (
    id          uuid primary key,
    tenant_id   uuid not null references tenants (id),
    name        text not null,
    created_at  timestamptz not null default now(),
    unique (tenant_id, id),
    unique (tenant_id, name)
);

create table team_members (
    tenant_id  uuid not null,
    team_id    uuid not null,
    user_id    uuid not null,
    primary key (team_id, user_id),
    foreign key (tenant_id, team_id) references teams (tenant_id, id) on delete cascade,
    foreign key (tenant_id, user_id) references memberships (tenant_id, user_id) on delete cascade
);

create table projects (
    id               uuid primary key,
    tenant_id        uuid not null references tenants (id),
    key              text not null check (key ~ '^[A-Z][A-Z0-9]{1,9}$'),
    name             text not null,
    -- The number the next task created in this project gets (`KEY-<number>`).
    next_task_number bigint not null default 1,
    created_at       timestamptz not null default now(),
    unique (tenant_id, id),
    unique (tenant_id, key)
);

create table project_statuses (
    tenant_id   uuid not null,
    project_id  uuid not null,
    name        text not null check (length(name) between 1 and 100),
    category    text not null check (category in ('todo', 'in_progress', 'done')),
    position    integer not null,
    primary key (project_id, name),
    foreign key (tenant_id, project_id) references projects (tenant_id, id) on delete cascade
);

create table tasks (
    id               uuid primary key,
    tenant_id        uuid not null,
    project_id       uuid not null,
    key              text not null,
    title            text not null check (length(title) between 1 and 500),
    description      text,
    status           text not null,
    priority         text not null check (priority in ('urgent', 'high', 'medium', 'low', 'none')),
    -- The priority as the source system spelled it, kept for imported rows.
    source_priority  text,
    assignee_id      uuid,
    due_date         date,
    labels           text[] not null default '{}',
    version          bigint not null default 1,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    created_by       uuid references users (id),
    archived_at      timestamptz,
    source           text,
    source_key       text,
    unique (tenant_id, id),
    unique (tenant_id, key),
    unique (tenant_id, source, source_key),
    foreign key (tenant_id, project_id) references projects (tenant_id, id),
    foreign key (project_id, status) references project_statuses (project_id, name) on update cascade,
    foreign key (tenant_id, assignee_id) references memberships (tenant_id, user_id)
);
create index tasks_project_idx on tasks (tenant_id, project_id, id);
create index tasks_assignee_idx on tasks (tenant_id, assignee_id, id);

create table task_history (
    id           uuid primary key,
    tenant_id    uuid not null,
    task_id      uuid not null,
    version      bigint not null,
    actor_id     uuid references users (id),
    changes      jsonb not null,
    occurred_at  timestamptz not null default now(),
    foreign key (tenant_id, task_id) references tasks (tenant_id, id) on delete cascade
);
create index task_history_task_idx on task_history (task_id, version);

create table comments (
    id          uuid primary key,
    tenant_id   uuid not null,
    task_id     uuid not null,
    author_id   uuid,
    body        text not null,
    created_at  timestamptz not null default now(),
    source      text,
    source_key  text,
    unique (tenant_id, id),
    unique (tenant_id, source, source_key),
    foreign key (tenant_id, task_id) references tasks (tenant_id, id) on delete cascade,
    foreign key (tenant_id, author_id) references memberships (tenant_id, user_id)
);
create index comments_task_idx on comments (task_id, created_at, id);

create table mentions (
    tenant_id   uuid not null,
    comment_id  uuid not null,
    user_id     uuid not null,
    primary key (comment_id, user_id),
    foreign key (tenant_id, comment_id) references comments (tenant_id, id) on delete cascade,
    foreign key (tenant_id, user_id) references memberships (tenant_id, user_id)
);

create table notifications (
    id          uuid primary key,
    tenant_id   uuid not null,
    user_id     uuid not null,
    kind        text not null,
    task_id     uuid,
    comment_id  uuid,
    data        jsonb not null,
    created_at  timestamptz not null default now(),
    read_at     timestamptz,
    unique (tenant_id, id),
    -- One mention notification per person and comment, however often the event arrives.
    unique (user_id, kind, comment_id),
    foreign key (tenant_id, user_id) references memberships (tenant_id, user_id),
    foreign key (tenant_id, task_id) references tasks (tenant_id, id) on delete cascade
);
create index notifications_user_idx on notifications (tenant_id, user_id, id desc);

create table uploads (
    id            uuid primary key,
    tenant_id     uuid not null references tenants (id),
    filename      text not null,
    content_type  text,
    size_bytes    bigint not null default 0,
    created_by    uuid references users (id),
    created_at    timestamptz not null default now(),
    unique (tenant_id, id)
);

-- An upload stored as ordered chunks of about 1 MiB, so no reader needs the whole file.
create table upload_chunks (
    tenant_id  uuid not null,
    upload_id  uuid not null,
    seq        integer not null,
    data       bytea not null,
    primary key (upload_id, seq),
    foreign key (tenant_id, upload_id) references uploads (tenant_id, id) on delete cascade
);

create table jobs (
    id           uuid primary key,
    tenant_id    uuid not null references tenants (id),
    kind         text not null,
    status       text not null check (status in ('queued', 'running', 'completed', 'failed', 'cancelled')),
    params       jsonb not null,
    created_by   uuid references users (id),
    total        bigint not null default 0,
    created      bigint not null default 0,
    updated      bigint not null default 0,
    failed       bigint not null default 0,
    -- Share of the work done, 0 to 100, as the worker estimates it.
    progress     integer not null default 0 check (progress between 0 and 100),
    error        text,
    created_at   timestamptz not null default now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    unique (tenant_id, id)
);

create table job_errors (
    id           bigserial primary key,
    tenant_id    uuid not null,
    job_id       uuid not null,
    row_number   bigint,
    column_name  text,
    reason       text not null,
    foreign key (tenant_id, job_id) references jobs (tenant_id, id) on delete cascade
);
-- A replayed import records each bad row once.
create unique index job_errors_row_key on job_errors (job_id, row_number, coalesce(column_name, ''));

-- Transactional outbox. `tx_id` is the writing transaction's id: the relay reads rows in
-- (tx_id, id) order and only below the oldest transaction still running, so a row that
-- commits late can never land behind a cursor that already moved past it.
create table outbox (
    id           bigserial primary key,
    tx_id        bigint not null default (pg_current_xact_id()::text::bigint),
    event_id     uuid not null unique,
    tenant_id    uuid,
    event_type   text not null,
    envelope     jsonb not null,
    created_at   timestamptz not null default now()
);
create index outbox_order_idx on outbox (tx_id, id);

create function notify_outbox() returns trigger language plpgsql as $$
begin
    perform pg_notify('outbox', '');
    return null;
end $$;
create trigger outbox_notify after insert on outbox
    for each statement execute function notify_outbox();

-- One cursor per relay destination, so a broker that is down holds back only its own stream.
create table relay_cursors (
    destination  text primary key,
    tx_id        bigint not null default 0,
    outbox_id    bigint not null default 0,
    updated_at   timestamptz not null default now()
);

create table hub_groups (
    group_name  text primary key,
    tenant_id   uuid,
    last_seq    bigint not null default 0
);

create table hub_messages (
    group_name  text not null,
    seq         bigint not null,
    event_id    uuid not null,
    method      text not null,
    envelope    jsonb not null,
    created_at  timestamptz not null default now(),
    primary key (group_name, seq)
);

-- Messages a consumer has already applied, so redelivery is harmless.
create table processed_messages (
    consumer      text not null,
    event_id      uuid not null,
    processed_at  timestamptz not null default now(),
    primary key (consumer, event_id)
);

create table idempotency_keys (
    user_id       uuid not null,
    key           text not null,
    request_hash  text not null,
    status        integer,
    response      jsonb,
    created_at    timestamptz not null default now(),
    primary key (user_id, key)
);
