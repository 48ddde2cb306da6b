-- The app's own tables, in public. Each belongs to an account by `account_id`, checked by the
-- policies but, as the starter's examples do it, without a foreign key to basejump.accounts.
create table public.projects (
    id          uuid primary key default gen_random_uuid(),
    account_id  uuid not null,
    name        text not null check (length(trim(name)) > 0),
    slug        text not null check (slug ~ '^[a-z0-9][a-z0-9-]*$'),
    status      text not null default 'active' check (status in ('active', 'paused', 'archived')),
    settings    jsonb not null default '{}'::jsonb,
    created_at  timestamptz,
    updated_at  timestamptz,
    created_by  uuid references auth.users,
    updated_by  uuid references auth.users,
    unique (account_id, slug)   -- its index leads with account_id: a key on it needs no other
);
create trigger projects_stamp_times before insert or update on public.projects
    for each row execute procedure basejump.stamp_times();
create trigger projects_stamp_users before insert or update on public.projects
    for each row execute procedure basejump.stamp_users();

create table public.project_members (
    project_id  uuid not null references public.projects (id) on delete cascade,
    user_id     uuid not null references auth.users (id) on delete cascade,
    account_id  uuid not null,   -- copied from the project, for the policies
    role        text not null default 'viewer' check (role in ('viewer', 'editor', 'admin')),
    added_at    timestamptz not null default now(),
    primary key (project_id, user_id)
);

alter table public.projects enable row level security;
alter table public.project_members enable row level security;

create policy "members read their account's projects" on public.projects
    for select to authenticated using (basejump.has_role_on_account(account_id));
create policy "members create projects" on public.projects
    for insert to authenticated with check (basejump.has_role_on_account(account_id));
create policy "owners change projects" on public.projects
    for update to authenticated using (basejump.has_role_on_account(account_id, 'owner'));
create policy "owners delete projects" on public.projects
    for delete to authenticated using (basejump.has_role_on_account(account_id, 'owner'));

create policy "members read project members" on public.project_members
    for select to authenticated using (basejump.has_role_on_account(account_id));
create policy "owners manage project members" on public.project_members
    for all to authenticated
    using (basejump.has_role_on_account(account_id, 'owner'))
    with check (basejump.has_role_on_account(account_id, 'owner'));

grant select, insert, update, delete on public.projects, public.project_members to authenticated;
grant all on public.projects, public.project_members to service_role;
