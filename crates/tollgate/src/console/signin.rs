//! Signed-in console sessions, held server-side: the browser keeps only a random id in an
//! HttpOnly, SameSite=Strict cookie, and the map holds its hash (so the ids cannot be read back
//! out of memory), who signed in, the session's CSRF token and its idle and absolute expiry.
//!
//! A session signed in with an admin token keeps the token (in memory only) and resolves it
//! again on every page, so a revoked token or a changed role takes effect on the next click.
//! A session signed in through OpenID Connect keeps the role the provider's claim mapped to,
//! until it expires or the person signs out.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use rand::RngCore;
use subtle::ConstantTimeEq;

use tollgate_core::KeyHash;

/// A session's key in the map: the SHA-256 of its cookie.
pub type SessionId = [u8; 32];

fn id_of(cookie: &str) -> SessionId {
    KeyHash::of(cookie).0
}

use super::oidc::Pending;
use crate::control::Actor;

/// The session cookie's name.
pub const COOKIE: &str = "tollgate_console";
/// The cookie of a sign-in not completed yet: the sign-in form's CSRF value, or the OpenID
/// Connect state (SameSite=Lax, as the provider's redirect back is a cross-site navigation).
pub const PENDING_COOKIE: &str = "tollgate_console_pending";
/// How long an OpenID Connect sign-in may take at the provider.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
/// Sessions kept at most; past it, signing in again first drops the expired ones and then,
/// if still full, is refused (a flood of sign-ins cannot grow memory without bound).
const MAX_SESSIONS: usize = 100_000;
/// OpenID Connect sign-ins waiting for the provider at most.
const MAX_PENDING: usize = 10_000;

/// How a session proves who it is on every page.
#[derive(Clone)]
pub enum Credential {
    /// An admin token, resolved again on every request.
    AdminToken(String),
    /// The actor an OpenID provider's claim mapped to.
    Oidc(Actor),
}

pub struct Session {
    pub credential: Credential,
    /// Every form carries it; a POST without it is refused.
    pub csrf: String,
    /// One message to show on the next page (after a redirect).
    pub flash: Option<String>,
    /// One-time tokens of the forms that show a secret (issue or rotate a key, create an admin
    /// token), newest last: a resent form (a reload of the result, a double click) finds its
    /// token used and issues nothing.
    once: std::collections::VecDeque<String>,
    created: Instant,
    last_seen: Instant,
}

/// What a request's cookie leads to.
pub struct Current {
    /// The cookie's hash, the map's key.
    pub id: SessionId,
    pub credential: Credential,
    pub csrf: String,
    pub flash: Option<String>,
}

pub struct SignIns {
    sessions: DashMap<SessionId, Session>,
    /// OpenID Connect sign-ins waiting for the provider's redirect, by the pending cookie.
    pending: DashMap<SessionId, (Pending, Instant)>,
    idle: Duration,
    absolute: Duration,
}

/// A random token: 32 bytes, hex (cookie- and form-safe).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Equal in constant time (CSRF tokens).
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl SignIns {
    pub fn new(idle: Duration, absolute: Duration) -> SignIns {
        SignIns {
            sessions: DashMap::new(),
            pending: DashMap::new(),
            idle,
            absolute,
        }
    }

    pub fn absolute(&self) -> Duration {
        self.absolute
    }

    /// Starts a session: the cookie value to set, or `None` when the table is full of live ones.
    pub fn create(&self, credential: Credential) -> Option<String> {
        if self.sessions.len() >= MAX_SESSIONS {
            self.sweep();
            if self.sessions.len() >= MAX_SESSIONS {
                return None;
            }
        }
        let cookie = random_token();
        let now = Instant::now();
        self.sessions.insert(
            id_of(&cookie),
            Session {
                credential,
                csrf: random_token(),
                flash: None,
                once: std::collections::VecDeque::new(),
                created: now,
                last_seen: now,
            },
        );
        Some(cookie)
    }

    /// The live session behind `cookie` (its flash taken), touching its idle clock; an expired
    /// one is removed.
    pub fn current(&self, cookie: &str) -> Option<Current> {
        let id = id_of(cookie);
        let now = Instant::now();
        let mut entry = self.sessions.get_mut(&id)?;
        let session = entry.value_mut();
        let expired = now.duration_since(session.last_seen) > self.idle
            || now.duration_since(session.created) > self.absolute;
        if expired {
            drop(entry);
            self.sessions.remove(&id);
            return None;
        }
        session.last_seen = now;
        Some(Current {
            id,
            credential: session.credential.clone(),
            csrf: session.csrf.clone(),
            flash: session.flash.take(),
        })
    }

    pub fn set_flash(&self, id: &SessionId, message: String) {
        if let Some(mut session) = self.sessions.get_mut(id) {
            session.flash = Some(message);
        }
    }

    /// A new one-time form token for this session (the newest 64 are kept).
    pub fn new_once(&self, id: &SessionId) -> String {
        let token = random_token();
        if let Some(mut session) = self.sessions.get_mut(id) {
            if session.once.len() >= 64 {
                session.once.pop_front();
            }
            session.once.push_back(token.clone());
        }
        token
    }

    /// Uses up a one-time form token: true the first time, false after (or for a stranger).
    pub fn use_once(&self, id: &SessionId, token: &str) -> bool {
        let Some(mut session) = self.sessions.get_mut(id) else {
            return false;
        };
        match session.once.iter().position(|t| same_secret(t, token)) {
            Some(i) => {
                session.once.remove(i);
                true
            }
            None => false,
        }
    }

    pub fn end(&self, id: &SessionId) {
        self.sessions.remove(id);
    }

    /// Keeps an OpenID Connect sign-in until the provider sends the browser back: the cookie
    /// value that finds it again, or `None` when too many are waiting (anyone can start one, so
    /// a flood of starts is refused rather than kept).
    pub fn hold_pending(&self, pending: Pending) -> Option<String> {
        let now = Instant::now();
        if self.pending.len() >= MAX_PENDING {
            self.pending
                .retain(|_, (_, at)| now.duration_since(*at) <= PENDING_TTL);
            if self.pending.len() >= MAX_PENDING {
                return None;
            }
        }
        let cookie = random_token();
        self.pending.insert(id_of(&cookie), (pending, now));
        Some(cookie)
    }

    /// The pending sign-in behind the cookie, removed (a callback is good once).
    pub fn take_pending(&self, cookie: &str) -> Option<Pending> {
        let (_, (pending, at)) = self.pending.remove(&id_of(cookie))?;
        (at.elapsed() <= PENDING_TTL).then_some(pending)
    }

    fn sweep(&self) {
        let now = Instant::now();
        self.sessions.retain(|_, s| {
            now.duration_since(s.last_seen) <= self.idle
                && now.duration_since(s.created) <= self.absolute
        });
    }

    #[cfg(test)]
    fn age(&self, cookie: &str, by: Duration) {
        if let Some(mut s) = self.sessions.get_mut(&id_of(cookie)) {
            s.last_seen = s.last_seen.checked_sub(by).unwrap_or(s.last_seen);
            s.created = s.created.checked_sub(by).unwrap_or(s.created);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_flash_is_shown_once() {
        let signins = SignIns::new(Duration::from_secs(60), Duration::from_secs(3600));
        let cookie = signins
            .create(Credential::AdminToken("tga-x".into()))
            .unwrap();
        let current = signins.current(&cookie).unwrap();
        signins.set_flash(&current.id, "Key revoked.".into());
        assert_eq!(
            signins.current(&cookie).unwrap().flash.as_deref(),
            Some("Key revoked.")
        );
        assert_eq!(signins.current(&cookie).unwrap().flash, None);
        assert!(signins.current("not-a-session").is_none());
        signins.age(&cookie, Duration::from_secs(61));
        assert!(signins.current(&cookie).is_none(), "idle for too long");
    }

    #[test]
    fn a_busy_session_still_ends_at_its_absolute_expiry() {
        let signins = SignIns::new(Duration::from_secs(60), Duration::from_secs(120));
        let cookie = signins
            .create(Credential::AdminToken("tga-x".into()))
            .unwrap();
        signins.age(&cookie, Duration::from_secs(121));
        // `age` also moved last_seen back; touch it so only the absolute limit applies.
        if let Some(mut s) = signins.sessions.get_mut(&id_of(&cookie)) {
            s.last_seen = Instant::now();
        }
        assert!(signins.current(&cookie).is_none());
    }

    #[test]
    fn a_one_time_form_token_works_once() {
        let signins = SignIns::new(Duration::from_secs(60), Duration::from_secs(3600));
        let cookie = signins
            .create(Credential::AdminToken("tga-x".into()))
            .unwrap();
        let id = signins.current(&cookie).unwrap().id;
        let once = signins.new_once(&id);
        assert!(!signins.use_once(&id, "forged"));
        assert!(signins.use_once(&id, &once));
        assert!(
            !signins.use_once(&id, &once),
            "a resent form issues nothing"
        );
    }

    #[test]
    fn csrf_compare_needs_the_whole_token() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }
}
