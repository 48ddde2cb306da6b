-- Organization feeds list their notifications; account-level ones (no organization) stay out of
-- the index. Built without blocking writes.
create index concurrently if not exists notifications_organization_feed
    on public.notifications (organization_id)
    where organization_id is not null;
