-- Billing copies of the provider's invoices, and an activity log whose subject is any row of the
-- app (a project, an invoice, the account itself), named by subject_type.
create table public.invoices (
    id            bigint generated always as identity primary key,
    account_id    uuid not null,
    number        text not null unique,
    status        text not null default 'draft' check (status in ('draft', 'open', 'paid', 'void')),
    currency      text not null default 'usd' check (currency ~ '^[a-z]{3}$'),
    amount_cents  integer not null check (amount_cents >= 0),
    period        daterange,
    issued_at     timestamptz,
    paid_at       timestamptz,
    check (paid_at is null or status = 'paid')
);
-- At most one open invoice per account. Partial: it does not cover account_id for a foreign key.
create unique index invoices_one_open_per_account on public.invoices (account_id) where status = 'open';

create table public.activity_log (
    id            bigint generated always as identity primary key,
    account_id    uuid not null,
    actor_id      uuid references auth.users on delete set null default auth.uid(),
    subject_type  text not null check (subject_type in ('account', 'project', 'invoice', 'member')),
    subject_id    uuid,
    action        text not null,
    details       jsonb not null default '{}'::jsonb,
    created_at    timestamptz not null default now()
);

alter table public.invoices enable row level security;
alter table public.activity_log enable row level security;

create policy "owners read invoices" on public.invoices
    for select to authenticated using (basejump.has_role_on_account(account_id, 'owner'));
create policy "members read their account's activity" on public.activity_log
    for select to authenticated using (basejump.has_role_on_account(account_id));

grant select on public.invoices, public.activity_log to authenticated;
grant all on public.invoices, public.activity_log to service_role;

-- Every project change is logged.
create or replace function public.log_project_change()
returns trigger
language plpgsql
security definer
set search_path = public
as $$
begin
    insert into public.activity_log (account_id, subject_type, subject_id, action, details)
    values (new.account_id, 'project', new.id, lower(tg_op), jsonb_build_object('name', new.name));
    return new;
end;
$$;
create trigger projects_log_change after insert or update on public.projects
    for each row execute function public.log_project_change();
