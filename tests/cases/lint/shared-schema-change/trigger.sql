-- Plans get a seat limit.
ALTER TABLE public.plans ADD COLUMN seats int;
