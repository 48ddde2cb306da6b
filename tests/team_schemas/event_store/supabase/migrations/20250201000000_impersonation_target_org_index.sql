-- Built without blocking writes: the Supabase CLI (2.109 and later) runs it outside the file's
-- transaction.
create index concurrently if not exists idx_impersonation_sessions_target_org
    on public.impersonation_sessions_projection (target_org_id);
