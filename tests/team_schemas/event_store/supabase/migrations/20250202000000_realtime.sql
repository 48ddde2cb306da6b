-- Clients follow organization changes and new events live.
alter publication supabase_realtime add table public.organizations_projection, public.domain_events;

create extension if not exists plpgsql_check;
