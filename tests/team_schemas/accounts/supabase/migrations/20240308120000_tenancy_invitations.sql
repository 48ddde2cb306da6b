-- Invitations to a team account: a token per invitation, one-off or valid for a day.
do $$
begin
    if not exists (select 1 from pg_type t join pg_namespace n on n.oid = t.typnamespace
                   where n.nspname = 'basejump' and t.typname = 'invitation_kind') then
        create type basejump.invitation_kind as enum ('one_time', '24_hour');
    end if;
end;
$$;

create table if not exists basejump.invitations (
    id                 uuid primary key default extensions.uuid_generate_v4(),
    account_id         uuid not null references basejump.accounts (id) on delete cascade,
    account_role       basejump.account_role not null,
    token              text not null unique default basejump.random_token(30),
    invited_by_user_id uuid not null references auth.users,
    account_name       text,
    invitation_kind    basejump.invitation_kind not null,
    created_at         timestamptz,
    updated_at         timestamptz
);
create index if not exists invitations_account_id_idx on basejump.invitations (account_id);

-- Personal accounts cannot be invited to; the account's name is copied for the invitee's screen.
create or replace function basejump.check_invitation()
returns trigger
language plpgsql
security definer
set search_path = public
as $$
begin
    if (select a.personal_account from basejump.accounts a where a.id = new.account_id) then
        raise exception 'a personal account cannot have invitations';
    end if;
    new.account_name := (select a.name from basejump.accounts a where a.id = new.account_id);
    return new;
end;
$$;
create trigger invitations_check before insert on basejump.invitations
    for each row execute function basejump.check_invitation();
create trigger invitations_stamp_times before insert or update on basejump.invitations
    for each row execute procedure basejump.stamp_times();

grant select, insert, update, delete on basejump.invitations to authenticated, service_role;
alter table basejump.invitations enable row level security;
create policy "owners see their account's invitations" on basejump.invitations
    for select to authenticated
    using (created_at > now() - interval '24 hours' and basejump.has_role_on_account(account_id, 'owner'));
create policy "owners invite to team accounts" on basejump.invitations
    for insert to authenticated
    with check (basejump.setting('enable_team_accounts')
                and basejump.has_role_on_account(account_id, 'owner'));
create policy "owners withdraw invitations" on basejump.invitations
    for delete to authenticated using (basejump.has_role_on_account(account_id, 'owner'));
