-- A member's role in one project. It narrows what the tenant role allows in that project
-- and never widens it; members without a row act with their tenant role alone.
create table project_roles (
    tenant_id  uuid not null,
    project_id uuid not null,
    user_id    uuid not null,
    role       text not null check (role in ('lead', 'member', 'viewer')),
    created_at timestamptz not null default now(),
    primary key (project_id, user_id),
    foreign key (tenant_id, project_id) references projects (tenant_id, id) on delete cascade,
    -- Removing someone from the tenant removes their project roles too.
    foreign key (tenant_id, user_id) references memberships (tenant_id, user_id) on delete cascade
);
