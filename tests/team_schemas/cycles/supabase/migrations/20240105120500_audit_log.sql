-- Who did what to which entity. entity_id names an organization, a membership's organization or
-- a document depending on entity_type: it can have no foreign key, and the log outlives them.
create table public.audit_log (
    id          bigint generated always as identity primary key,
    entity_type text not null check (entity_type in ('organization', 'membership', 'document')),
    entity_id   uuid not null,
    action      text not null check (action in ('insert', 'update', 'delete')),
    actor_id    uuid,
    details     jsonb not null default '{}'::jsonb,
    at          timestamptz not null default now()
);
create index audit_log_entity on public.audit_log (entity_type, entity_id, at desc);

create or replace function public.write_audit_log()
returns trigger
language plpgsql
security definer
set search_path = public
as $$
declare
    entity_type text := tg_argv[0];
    row_data    jsonb := to_jsonb(coalesce(new, old));
begin
    insert into audit_log (entity_type, entity_id, action, actor_id, details)
    values (entity_type,
            (case when entity_type = 'membership' then row_data ->> 'organization_id'
                  else row_data ->> 'id' end)::uuid,
            lower(tg_op), auth.uid(),
            jsonb_build_object('organization_id',
                               case when entity_type = 'organization' then row_data ->> 'id'
                                    else row_data ->> 'organization_id' end,
                               'row', row_data));
    return null;
end;
$$;

create trigger organizations_audit after insert or update or delete on public.organizations
    for each row execute function public.write_audit_log('organization');
create trigger memberships_audit after insert or update or delete on public.memberships
    for each row execute function public.write_audit_log('membership');
create trigger documents_audit after insert or delete on public.documents
    for each row execute function public.write_audit_log('document');
