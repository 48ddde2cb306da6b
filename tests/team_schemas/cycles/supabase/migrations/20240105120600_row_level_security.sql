-- Every table is behind row-level security. Members see their organizations' rows; the
-- server-side tables (webhooks, billing customers, the audit log) have no policy at all: the API
-- roles get nothing, the service role bypasses RLS. Documents force RLS on their owner too.
create or replace function public.is_member(org uuid, min_role public.member_role default 'viewer')
returns boolean
language sql
stable
security definer
set search_path = public
as $$
    select exists (select 1 from memberships m
                   where m.organization_id = org and m.profile_id = auth.uid() and m.role <= min_role)
$$;

alter table public.profiles enable row level security;
alter table public.organizations enable row level security;
alter table public.memberships enable row level security;
alter table public.invitations enable row level security;
alter table public.documents enable row level security;
alter table public.documents force row level security;
alter table public.notifications enable row level security;
alter table public.webhooks enable row level security;
alter table public.billing_customers enable row level security;
alter table public.audit_log enable row level security;

create policy "read own profile" on public.profiles for select to authenticated
    using (id = auth.uid());
create policy "update own profile" on public.profiles for update to authenticated
    using (id = auth.uid()) with check (id = auth.uid());
create policy "members read organizations" on public.organizations for select to authenticated
    using (public.is_member(id));
create policy "owners update organizations" on public.organizations for update to authenticated
    using (owner_id = auth.uid());
create policy "create organizations" on public.organizations for insert to authenticated
    with check (owner_id = auth.uid() and not personal);
create policy "members read memberships" on public.memberships for select to authenticated
    using (profile_id = auth.uid() or public.is_member(organization_id));
create policy "admins manage memberships" on public.memberships for all to authenticated
    using (public.is_member(organization_id, 'admin')) with check (public.is_member(organization_id, 'admin'));
create policy "admins manage invitations" on public.invitations for all to authenticated
    using (public.is_member(organization_id, 'admin'))
    with check (public.is_member(organization_id, 'admin') and invited_by = auth.uid());
create policy "members read documents" on public.documents for select to authenticated
    using (public.is_member(organization_id));
create policy "members write documents" on public.documents for insert to authenticated
    with check (public.is_member(organization_id, 'member') and created_by = auth.uid());
create policy "authors edit documents" on public.documents for update to authenticated
    using (created_by = auth.uid());
create policy "read own notifications" on public.notifications for select to authenticated
    using (profile_id = auth.uid());
create policy "mark own notifications read" on public.notifications for update to authenticated
    using (profile_id = auth.uid());

grant select, update on public.profiles to authenticated;
grant select, insert, update on public.organizations, public.documents to authenticated;
grant select, insert, update, delete on public.memberships, public.invitations to authenticated;
grant select, update on public.notifications to authenticated;
revoke all on public.webhooks, public.billing_customers, public.audit_log from anon, authenticated;
grant all on all tables in schema public to service_role;
