-- The key a rotation replaced this one with. A key is rotated once: rotating it again (a resent
-- form, a double click) would mint a second replacement that inherits the grace deadline as its
-- own expiry, so the second attempt is refused and names the replacement instead.
ALTER TABLE api_keys ADD COLUMN rotated_to TEXT;
