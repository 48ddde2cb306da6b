-- Accounts (the tenants) and their members. Every user gets a personal account when signing up;
-- team accounts have a slug. Row level security goes through security-definer helpers, so a
-- policy on one table may look at another without recursing into its policies.
do $$
begin
    if not exists (select 1 from pg_type t join pg_namespace n on n.oid = t.typnamespace
                   where n.nspname = 'basejump' and t.typname = 'account_role') then
        create type basejump.account_role as enum ('owner', 'member');
    end if;
end;
$$;

create table if not exists basejump.accounts (
    id                    uuid not null unique default extensions.uuid_generate_v4(),
    primary_owner_user_id uuid not null default auth.uid() references auth.users,
    name                  text,
    slug                  text unique,
    personal_account      boolean not null default false,
    created_at            timestamptz,
    updated_at            timestamptz,
    created_by            uuid references auth.users,
    updated_by            uuid references auth.users,
    private_metadata      jsonb default '{}'::jsonb,
    public_metadata       jsonb default '{}'::jsonb,
    primary key (id)
);

-- A personal account has no slug; a team account must have one.
alter table basejump.accounts add constraint accounts_slug_only_for_teams check (
    (personal_account and slug is null) or (not personal_account and slug is not null));

grant select, insert, update, delete on basejump.accounts to authenticated, service_role;
alter table basejump.accounts enable row level security;

create or replace function basejump.guard_account_fields()
returns trigger
language plpgsql
as $$
begin
    if current_user in ('authenticated', 'anon')
       and (new.id <> old.id or new.personal_account <> old.personal_account
            or new.primary_owner_user_id <> old.primary_owner_user_id) then
        raise exception 'only the service role may change id, personal_account or primary_owner_user_id';
    end if;
    return new;
end;
$$;
create trigger accounts_guard_fields before update on basejump.accounts
    for each row execute function basejump.guard_account_fields();

-- Slugs are lower case, anything but letters, digits and dashes made a dash.
create or replace function basejump.normalize_slug()
returns trigger
language plpgsql
as $$
begin
    if new.slug is not null then
        new.slug := lower(regexp_replace(new.slug, '[^a-zA-Z0-9-]+', '-', 'g'));
    end if;
    return new;
end;
$$;
create trigger accounts_normalize_slug before insert or update on basejump.accounts
    for each row execute function basejump.normalize_slug();
create trigger accounts_stamp_times before insert or update on basejump.accounts
    for each row execute procedure basejump.stamp_times();
create trigger accounts_stamp_users before insert or update on basejump.accounts
    for each row execute procedure basejump.stamp_users();

create table if not exists basejump.account_user (
    user_id      uuid not null references auth.users on delete cascade,
    account_id   uuid not null references basejump.accounts on delete cascade,
    account_role basejump.account_role not null,
    constraint account_user_pkey primary key (user_id, account_id)
);
grant select, insert, update, delete on basejump.account_user to authenticated, service_role;
alter table basejump.account_user enable row level security;

-- Whoever creates an account for themselves owns it.
create or replace function basejump.add_creator_as_owner()
returns trigger
language plpgsql
security definer
set search_path = public
as $$
begin
    if new.primary_owner_user_id = auth.uid() then
        insert into basejump.account_user (account_id, user_id, account_role)
        values (new.id, auth.uid(), 'owner');
    end if;
    return new;
end;
$$;
create trigger accounts_add_creator_as_owner after insert on basejump.accounts
    for each row execute function basejump.add_creator_as_owner();

-- Sign-up: a personal account with the user's own id, and its ownership.
create or replace function basejump.setup_new_user()
returns trigger
language plpgsql
security definer
set search_path = public
as $$
declare
    account uuid;
begin
    insert into basejump.accounts (id, name, primary_owner_user_id, personal_account)
    values (new.id, split_part(coalesce(new.email, ''), '@', 1), new.id, true)
    returning id into account;
    insert into basejump.account_user (account_id, user_id, account_role)
    values (account, new.id, 'owner');
    return new;
end;
$$;
create trigger on_auth_user_created after insert on auth.users
    for each row execute procedure basejump.setup_new_user();

-- For policies: is the signed-in user a member of the account (with that role, when given)?
create or replace function basejump.has_role_on_account(account_id uuid,
                                                        account_role basejump.account_role default null)
returns boolean
language sql
security definer
set search_path = public
as $$
    select exists (
        select 1 from basejump.account_user m
        where m.user_id = auth.uid()
          and m.account_id = has_role_on_account.account_id
          and (has_role_on_account.account_role is null or m.account_role = has_role_on_account.account_role))
$$;
grant execute on function basejump.has_role_on_account(uuid, basejump.account_role) to authenticated;

create or replace function basejump.accounts_with_role(role basejump.account_role default null)
returns setof uuid
language sql
security definer
set search_path = public
as $$
    select m.account_id from basejump.account_user m
    where m.user_id = auth.uid() and (role is null or m.account_role = role)
$$;
grant execute on function basejump.accounts_with_role(basejump.account_role) to authenticated;

create policy "members see their account" on basejump.accounts
    for select to authenticated using (basejump.has_role_on_account(id));
create policy "owners see the accounts they own" on basejump.accounts
    for select to authenticated using (primary_owner_user_id = auth.uid());
create policy "anyone signed in may create a team" on basejump.accounts
    for insert to authenticated with check (basejump.setting('enable_team_accounts') and not personal_account);
create policy "owners edit their account" on basejump.accounts
    for update to authenticated using (basejump.has_role_on_account(id, 'owner'));

create policy "users see their memberships" on basejump.account_user
    for select to authenticated using (user_id = auth.uid());
create policy "members see their teammates" on basejump.account_user
    for select to authenticated using (basejump.has_role_on_account(account_id));
create policy "owners remove members but not the primary owner" on basejump.account_user
    for delete to authenticated using (
        basejump.has_role_on_account(account_id, 'owner')
        and user_id <> (select a.primary_owner_user_id from basejump.accounts a where a.id = account_id));

-- The API: functions in public, called through PostgREST.
create or replace function public.get_account_id(slug text)
returns uuid
language sql
as $$
    select a.id from basejump.accounts a where a.slug = get_account_id.slug
$$;
grant execute on function public.get_account_id(text) to authenticated, service_role;

create or replace function public.create_account(slug text default null, name text default null)
returns uuid
language plpgsql
as $$
declare
    created uuid;
begin
    insert into basejump.accounts (slug, name) values (create_account.slug, create_account.name)
    returning id into created;
    return created;
end;
$$;
grant execute on function public.create_account(text, text) to authenticated;
