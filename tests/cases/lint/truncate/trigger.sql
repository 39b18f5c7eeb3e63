-- Usage is billed monthly; old events are no longer needed.
TRUNCATE usage_events;
