-- Server-side only: outgoing webhooks and the billing provider's customers; user-facing:
-- notifications (organization_id NULL for account-level ones).
create table public.webhooks (
    id              uuid primary key default gen_random_uuid(),
    organization_id uuid not null,
    url             text not null check (url ~ '^https://'),
    secret          text not null default encode(extensions.gen_random_bytes(32), 'base64'),
    events          text[] not null default '{document.published}' check (cardinality(events) > 0),
    active          boolean not null default true,
    created_at      timestamptz not null default now()
);

create table public.billing_customers (
    organization_id    uuid primary key,
    stripe_customer_id text not null unique check (stripe_customer_id ~ '^cus_[A-Za-z0-9]+$'),
    created_at         timestamptz not null default now()
);

create table public.notifications (
    id              bigint generated always as identity primary key,
    profile_id      uuid not null references public.profiles (id) on delete cascade,
    organization_id uuid,
    kind            text not null check (kind in ('invited', 'mentioned', 'published', 'billing')),
    payload         jsonb not null default '{}'::jsonb check (jsonb_typeof(payload) = 'object'),
    read_at         timestamptz,
    created_at      timestamptz not null default now()
);
create index notifications_unread on public.notifications (profile_id, created_at desc) where read_at is null;
