-- Baseline of an event-sourced project: the event store, the organization read model written by
-- the event router, user roles, row level security and the API roles' grants.
create extension if not exists pg_graphql with schema graphql;
create extension if not exists supabase_vault with schema vault;
create extension if not exists "uuid-ossp" with schema extensions;
create extension if not exists pgcrypto with schema extensions;
create extension if not exists ltree with schema extensions;

create table public.organizations_projection (
    id              uuid primary key,
    name            text not null,
    slug            text not null unique,
    type            text not null check (type in ('platform_owner', 'provider', 'provider_partner')),
    path            extensions.ltree not null,
    parent_org_id   uuid references public.organizations_projection (id),
    is_active       boolean not null default true,
    deleted_at      timestamptz,
    deletion_reason text,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz,
    metadata        jsonb not null default '{}'::jsonb,
    tags            text[] not null default '{}'
);
create index organizations_projection_path_idx on public.organizations_projection using gist (path);

create table public.domain_events (
    id               uuid primary key default extensions.uuid_generate_v4(),
    sequence_number  bigint generated always as identity unique,
    stream_id        uuid not null,
    stream_type      text not null,
    stream_version   integer not null,
    event_type       text not null,
    event_data       jsonb not null default '{}'::jsonb,
    event_metadata   jsonb not null default '{}'::jsonb,
    processed_at     timestamptz,
    processing_error text,
    retry_count      integer not null default 0,
    created_at       timestamptz not null default now(),
    unique (stream_id, stream_type, stream_version)
);

create view public.unprocessed_events as
    select * from public.domain_events where processed_at is null or processing_error is not null;

create table public.user_roles_projection (
    user_id    uuid not null references auth.users (id) on delete cascade,
    org_id     uuid not null,  -- no foreign key yet: the runbook adds it
    role       text not null check (role in ('owner', 'admin', 'member')),
    granted_at timestamptz not null default now(),
    primary key (user_id, org_id)
);

-- Labels are the slug with '-' made '_': PostgreSQL 15's ltree refuses '-' in a label.
create or replace function public.handle_organization_event(p_event public.domain_events)
returns void
language plpgsql
set search_path = public, extensions
as $$
begin
    case p_event.event_type
        when 'organization.created' then
            insert into organizations_projection (id, name, slug, type, path, parent_org_id, created_at)
            values (p_event.stream_id, p_event.event_data ->> 'name', p_event.event_data ->> 'slug',
                    p_event.event_data ->> 'type',
                    coalesce((select o.path from organizations_projection o
                              where o.id = (p_event.event_data ->> 'parent_org_id')::uuid), ''::ltree)
                        || text2ltree(replace(p_event.event_data ->> 'slug', '-', '_')),
                    (p_event.event_data ->> 'parent_org_id')::uuid, p_event.created_at);
        when 'organization.deactivated' then
            update organizations_projection
               set is_active = false, deleted_at = now(), deletion_reason = p_event.event_data ->> 'reason',
                   updated_at = now()
             where id = p_event.stream_id;
        else
            raise exception 'unknown organization event: %', p_event.event_type;
    end case;
end;
$$;

-- BEFORE INSERT: the event is routed to its handler, which writes the projection; a failing
-- handler leaves the event unprocessed with its error instead of refusing it.
create or replace function public.process_domain_event()
returns trigger
language plpgsql
set search_path = public
as $$
begin
    if new.stream_type = 'organization' then
        perform handle_organization_event(new);
    end if;
    new.processed_at := now();
    return new;
exception when others then
    new.processing_error := sqlerrm;
    new.processed_at := null;
    return new;
end;
$$;

create trigger process_domain_event
    before insert on public.domain_events
    for each row execute function public.process_domain_event();

create or replace function public.current_org_id()
returns uuid
language sql
stable
as $$
    select nullif(auth.jwt() -> 'app_metadata' ->> 'org_id', '')::uuid
$$;

create or replace function public.handle_new_user()
returns trigger
language plpgsql
security definer
set search_path = public
as $$
begin
    insert into domain_events (stream_id, stream_type, stream_version, event_type, event_data)
    values (new.id, 'user', 1, 'user.registered',
            jsonb_build_object('email', new.email, 'org_id', new.raw_app_meta_data ->> 'org_id'));
    return new;
end;
$$;

create trigger on_auth_user_created
    after insert on auth.users
    for each row execute function public.handle_new_user();

alter table public.organizations_projection enable row level security;
alter table public.domain_events enable row level security;
alter table public.user_roles_projection enable row level security;

create policy "members read their organization" on public.organizations_projection
    for select to authenticated
    using (id = public.current_org_id()
           or exists (select 1 from public.user_roles_projection r
                      where r.org_id = organizations_projection.id and r.user_id = auth.uid()));
create policy "super admins read every organization" on public.organizations_projection
    for select to authenticated
    using ((auth.jwt() -> 'app_metadata' ->> 'role') = 'super_admin');
create policy "users read their roles" on public.user_roles_projection
    for select to authenticated
    using (user_id = auth.uid());
create policy "members read their organization's events" on public.domain_events
    for select to authenticated
    using (stream_type = 'organization' and stream_id = public.current_org_id());
create policy "service role appends events" on public.domain_events
    for insert to service_role
    with check (true);

grant usage on schema public to anon, authenticated, service_role;
grant select on public.organizations_projection to anon, authenticated;
grant select on public.user_roles_projection, public.domain_events to authenticated;
grant all on all tables in schema public to service_role;
