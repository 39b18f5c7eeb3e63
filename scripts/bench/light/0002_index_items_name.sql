-- One plain index.
CREATE INDEX items_name_idx ON items (name);
