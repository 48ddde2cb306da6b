-- The activity feed reads an account's newest entries first; built without blocking writes.
create index concurrently if not exists activity_log_account_created_idx
    on public.activity_log (account_id, created_at desc);
