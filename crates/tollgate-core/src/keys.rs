//! Team keys and admin tokens: `<prefix>-<id>-<secret>`.
//!
//! The public id lets a lookup find the record without a scan; the secret is never stored, only the
//! SHA-256 of the whole token, compared in constant time.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length of the public id part (lowercase alphanumerics).
pub const ID_LEN: usize = 12;
/// Length of the secret part (alphanumerics, ~190 bits).
pub const SECRET_LEN: usize = 32;

/// Which kind of credential a token is; the prefix keeps a team key from ever opening `/admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// `tg-…`: a team key for the proxied OpenAI API.
    TeamKey,
    /// `tga-…`: an admin token for `/admin/v1`.
    AdminToken,
}

impl SecretKind {
    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::TeamKey => "tg",
            SecretKind::AdminToken => "tga",
        }
    }
}

/// SHA-256 of a whole token, the only form stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn of(token: &str) -> KeyHash {
        KeyHash(Sha256::digest(token.as_bytes()).into())
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<KeyHash> {
        let bytes = hex::decode(s).ok()?;
        Some(KeyHash(bytes.try_into().ok()?))
    }

    /// Constant-time comparison, so response timing reveals nothing about a stored hash.
    pub fn matches(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

/// Why an `Authorization` header carries no usable credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    #[error("no credential was provided")]
    Missing,
    #[error("the Authorization header must be 'Bearer <token>'")]
    NotBearer,
}

/// The token of an `Authorization: Bearer <token>` header: the one parser for `/v1` and
/// `/admin`. The scheme is required and case-insensitive, followed by one or more spaces
/// (RFC 7235 §2.1); a bare token with no scheme is refused rather than guessed at.
pub fn bearer_token(header: Option<&str>) -> Result<&str, BearerError> {
    let header = header.map(str::trim).unwrap_or_default();
    if header.is_empty() || header.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Missing);
    }
    let (scheme, token) = header.split_once(' ').ok_or(BearerError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::NotBearer);
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() {
        return Err(BearerError::Missing);
    }
    Ok(token)
}

/// A token split into its parts; borrowing the input so the hot path allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub kind: SecretKind,
    pub id: &'a str,
    pub token: &'a str,
}

impl<'a> ParsedKey<'a> {
    /// Parses `tg-<id>-<secret>` or `tga-<id>-<secret>`; anything else is `None`.
    pub fn parse(token: &'a str) -> Option<ParsedKey<'a>> {
        let (prefix, rest) = token.split_once('-')?;
        let kind = match prefix {
            "tg" => SecretKind::TeamKey,
            "tga" => SecretKind::AdminToken,
            _ => return None,
        };
        let (id, secret) = rest.split_once('-')?;
        let valid = id.len() == ID_LEN
            && secret.len() == SECRET_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && secret.bytes().all(|b| b.is_ascii_alphanumeric());
        valid.then_some(ParsedKey { kind, id, token })
    }
}

/// A freshly generated token: the full secret (shown once) and what gets stored.
#[derive(Debug, Clone)]
pub struct NewSecret {
    pub id: String,
    pub token: String,
    pub hash: KeyHash,
}

impl NewSecret {
    pub fn generate(kind: SecretKind) -> NewSecret {
        let id = random_string(ID_LEN, b"abcdefghijklmnopqrstuvwxyz0123456789");
        let secret = random_string(
            SECRET_LEN,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        );
        let token = format!("{}-{id}-{secret}", kind.prefix());
        let hash = KeyHash::of(&token);
        NewSecret { id, token, hash }
    }
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_required_and_case_insensitive() {
        for ok in ["Bearer tok", "bearer tok", "BEARER   tok", "  Bearer tok  "] {
            assert_eq!(bearer_token(Some(ok)), Ok("tok"), "{ok:?}");
        }
        for missing in [
            None,
            Some(""),
            Some("   "),
            Some("Bearer "),
            Some("Bearer    "),
        ] {
            assert_eq!(
                bearer_token(missing),
                Err(BearerError::Missing),
                "{missing:?}"
            );
        }
        for bad in ["tok", "Basic dXNlcjpwYXNz", "Bearertok", "Token tok"] {
            assert_eq!(
                bearer_token(Some(bad)),
                Err(BearerError::NotBearer),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn generated_keys_parse_and_hash_round_trips() {
        let key = NewSecret::generate(SecretKind::TeamKey);
        let parsed = ParsedKey::parse(&key.token).expect("parses");
        assert_eq!(parsed.kind, SecretKind::TeamKey);
        assert_eq!(parsed.id, key.id);
        assert!(KeyHash::of(parsed.token).matches(&key.hash));
        assert_eq!(KeyHash::from_hex(&key.hash.to_hex()), Some(key.hash));
        let admin = NewSecret::generate(SecretKind::AdminToken);
        assert_eq!(
            ParsedKey::parse(&admin.token).map(|p| p.kind),
            Some(SecretKind::AdminToken)
        );
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for bad in [
            "",
            "sk-abc",
            "tg-short-secret",
            "tg-abcdefghijkl",
            "xx-abcdefghijkl-0123456789abcdef0123456789abcdef",
            "tg-ABCDEFGHIJKL-0123456789abcdef0123456789abcdef",
            "tg-abcdefghijkl-0123456789abcdef0123456789abcde!",
        ] {
            assert!(ParsedKey::parse(bad).is_none(), "{bad} should not parse");
        }
    }
}
