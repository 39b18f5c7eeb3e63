-- Each tenant's subscriptions refer to the shared plans (a reference is
-- fine; the plans themselves are changed from a shared migration).
CREATE TABLE subscriptions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id bigint NOT NULL REFERENCES public.plans (id)
);
