-- Model allow-lists: a comma-separated list of model names (a trailing `*` matches a prefix,
-- e.g. `gpt-5*`); NULL allows every model.
ALTER TABLE teams ADD COLUMN allowed_models TEXT NULL;
ALTER TABLE api_keys ADD COLUMN allowed_models TEXT NULL;
