-- Schemas a run stopped between migrations (Ctrl-C, SIGTERM): counted apart
-- from the failed ones, which say something about the migrations.
ALTER TABLE runs ADD COLUMN tenants_stopped INT NOT NULL DEFAULT 0;
