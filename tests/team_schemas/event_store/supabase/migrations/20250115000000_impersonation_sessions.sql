-- Super-admin impersonation sessions: expired by a scheduled job, their ends reported to the
-- audit webhook (its URL kept in the vault).
create extension if not exists pg_net;
create extension if not exists pg_cron with schema pg_catalog;

create table public.impersonation_sessions_projection (
    id                  uuid primary key default gen_random_uuid(),
    session_id          text not null unique,
    super_admin_user_id uuid not null,
    target_user_id      uuid not null,
    target_org_id       uuid not null,
    status              text not null default 'active' check (status in ('active', 'ended', 'expired')),
    started_at          timestamptz not null default now(),
    expires_at          timestamptz not null,
    ended_at            timestamptz
);

alter table public.impersonation_sessions_projection enable row level security;
create policy "super admins read sessions" on public.impersonation_sessions_projection
    for select to authenticated
    using ((auth.jwt() -> 'app_metadata' ->> 'role') = 'super_admin');
grant select on public.impersonation_sessions_projection to authenticated;
grant all on public.impersonation_sessions_projection to service_role;

select vault.create_secret('https://audit.example.test/hooks/impersonation', 'audit_webhook_url');

create or replace function public.audit_webhook_url()
returns text
language sql
stable
as $$
    select decrypted_secret from vault.decrypted_secrets where name = 'audit_webhook_url'
$$;

create or replace function public.report_session_end()
returns trigger
language plpgsql
as $$
begin
    perform net.http_post(url := public.audit_webhook_url(),
                          body := jsonb_build_object('session_id', new.session_id, 'status', new.status));
    return new;
end;
$$;

create trigger report_session_end
    after update of status on public.impersonation_sessions_projection
    for each row when (old.status = 'active' and new.status <> 'active')
    execute function public.report_session_end();

select cron.schedule('expire-impersonation-sessions', '*/5 * * * *', $$
    update public.impersonation_sessions_projection
       set status = 'expired', ended_at = now()
     where status = 'active' and expires_at < now()
$$);
