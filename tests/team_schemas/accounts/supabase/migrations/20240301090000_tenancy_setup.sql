-- A multi-tenant starter's foundation, in its own schema: settings, and the helpers its tables
-- share (timestamps and who-did-it columns kept by triggers, random tokens). The app's tables
-- live in public and reach the tenant table across the schema boundary.
create extension if not exists "uuid-ossp" with schema extensions;
create extension if not exists pgcrypto with schema extensions;

-- Functions are not callable by everyone unless granted.
alter default privileges revoke execute on functions from public;
alter default privileges in schema public revoke execute on functions from anon, authenticated;

create schema if not exists basejump;
grant usage on schema basejump to authenticated, service_role;

-- One row of switches the SQL functions read.
create table if not exists basejump.config (
    enable_team_accounts     boolean default true,
    enable_personal_billing  boolean default true,
    enable_team_billing      boolean default true,
    billing_provider         text    default 'stripe'
);
insert into basejump.config (enable_team_accounts, enable_personal_billing, enable_team_billing)
values (true, true, true);

grant select on basejump.config to authenticated, service_role;
alter table basejump.config enable row level security;
create policy "signed-in users read the settings" on basejump.config
    for select to authenticated using (true);

create or replace function basejump.setting(name text)
returns boolean
language plpgsql
stable
as $$
declare
    value boolean;
begin
    execute format('select %I from basejump.config limit 1', name) into value;
    return value;
end;
$$;
grant execute on function basejump.setting(text) to authenticated;

create or replace function basejump.stamp_times()
returns trigger
language plpgsql
as $$
begin
    if tg_op = 'INSERT' then
        new.created_at := now();
    else
        new.created_at := old.created_at;
    end if;
    new.updated_at := now();
    return new;
end;
$$;

-- created_by / updated_by: the signed-in user (null for the service role and migrations).
create or replace function basejump.stamp_users()
returns trigger
language plpgsql
as $$
begin
    if tg_op = 'INSERT' then
        new.created_by := auth.uid();
    else
        new.created_by := old.created_by;
    end if;
    new.updated_by := auth.uid();
    return new;
end;
$$;

create or replace function basejump.random_token(bytes integer)
returns text
language sql
volatile
as $$
    select translate(encode(extensions.gen_random_bytes(bytes), 'base64'), E'/+=\n', '')
$$;
grant execute on function basejump.random_token(integer) to authenticated;
