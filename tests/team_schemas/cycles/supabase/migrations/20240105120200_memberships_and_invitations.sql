-- Who belongs to which organization, and who was invited. Neither organization_id has a key.
create table public.memberships (
    organization_id uuid not null,
    profile_id      uuid not null references public.profiles (id) on delete cascade,
    role            public.member_role not null default 'member',
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    primary key (organization_id, profile_id)
);
create index memberships_profile_id_idx on public.memberships (profile_id);

create trigger memberships_updated_at before update on public.memberships
    for each row execute function public.set_updated_at();

create table public.invitations (
    id              uuid primary key default gen_random_uuid(),
    organization_id uuid not null,
    email           extensions.citext not null check (email ~ '^[^@\s]+@[^@\s]+$'),
    role            public.member_role not null default 'member' check (role <> 'owner'),
    token           text not null unique default encode(extensions.gen_random_bytes(24), 'hex'),
    invited_by      uuid references public.profiles (id) on delete set null,
    created_at      timestamptz not null default now(),
    expires_at      timestamptz not null default now() + interval '7 days',
    accepted_at     timestamptz,
    constraint invitations_expire_after_creation check (expires_at > created_at),
    constraint invitations_accepted_in_time check (accepted_at is null or accepted_at <= expires_at)
);
-- one open invitation per address and organization; accepted ones are history
create unique index invitations_open_per_email on public.invitations (organization_id, email)
    where accepted_at is null;
