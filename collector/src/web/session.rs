//! Sessions and the login guard of the web console: I/O-free, with the time
//! passed in, so the rules (idle expiry, lockout after repeated failures)
//! are tested as tables.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// Failures are counted over this window …
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// … and this many of them in it lock the name (or the address) out.
pub const MAX_FAILURES: usize = 5;
/// Sessions kept at most; beyond it the idlest is ended.
pub const MAX_SESSIONS: usize = 10_000;
/// Names and addresses whose failures are remembered at most.
const MAX_TRACKED: usize = 10_000;

/// A random token (256 bits, hex): session ids and CSRF tokens.
pub fn token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Whether `a` and `b` are equal, in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// One logged-in person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// User name.
    pub user: String,
    /// The token every form of this session carries.
    pub csrf: String,
    /// The password hash in force at login: a new password ends the session.
    pub password: String,
    last: Instant,
}

/// The open sessions, by id (the cookie's value).
#[derive(Debug, Default)]
pub struct Sessions {
    map: HashMap<String, Session>,
}

impl Sessions {
    /// Opens a session for `user`, who logged in with the password whose
    /// hash is `password`; its id.
    pub fn open(&mut self, user: &str, password: &str, now: Instant) -> String {
        self.map.retain(|_, s| now.duration_since(s.last) < IDLE);
        if self.map.len() >= MAX_SESSIONS
            && let Some(idlest) = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
        {
            self.map.remove(&idlest);
        }
        let id = token();
        self.map.insert(
            id.clone(),
            Session {
                user: user.to_string(),
                csrf: token(),
                password: password.to_string(),
                last: now,
            },
        );
        id
    }

    /// The session `id`, kept alive by this request; `None` when there is
    /// none or it was idle too long (then it is ended).
    pub fn touch(&mut self, id: &str, now: Instant) -> Option<Session> {
        let s = self.map.get_mut(id)?;
        if now.duration_since(s.last) >= IDLE {
            self.map.remove(id);
            return None;
        }
        s.last = now;
        Some(s.clone())
    }

    /// Whether session `id` is still open, without keeping it alive (a
    /// live board does not keep an idle session open); an idle one ends.
    pub fn open_now(&mut self, id: &str, now: Instant) -> bool {
        match self.map.get(id) {
            Some(s) if now.duration_since(s.last) < IDLE => true,
            Some(_) => {
                self.map.remove(id);
                false
            }
            None => false,
        }
    }

    /// Ends session `id`; what it was.
    pub fn close(&mut self, id: &str) -> Option<Session> {
        self.map.remove(id)
    }
}

/// A login whose password was right, waiting for the second factor's code.
pub const PENDING: Duration = Duration::from_secs(5 * 60);
/// Pending logins kept at most; beyond it the oldest is dropped.
const MAX_PENDING: usize = 10_000;

/// A person half logged in: the password was right, the code is still
/// asked. It opens no page; only the code form takes it, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// User name.
    pub user: String,
    /// The token the code form carries.
    pub csrf: String,
    /// The password hash the password matched (a new one voids this).
    pub password: String,
    since: Instant,
}

/// The pending logins, by id (their own cookie's value).
#[derive(Debug, Default)]
pub struct PendingLogins {
    map: HashMap<String, Pending>,
}

impl PendingLogins {
    /// Starts a pending login of `user`, whose password matched the hash
    /// `password`; its id.
    pub fn open(&mut self, user: &str, password: &str, now: Instant) -> String {
        self.map
            .retain(|_, p| now.duration_since(p.since) < PENDING);
        if self.map.len() >= MAX_PENDING
            && let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, p)| p.since)
                .map(|(k, _)| k.clone())
        {
            self.map.remove(&oldest);
        }
        let id = token();
        self.map.insert(
            id.clone(),
            Pending {
                user: user.to_string(),
                csrf: token(),
                password: password.to_string(),
                since: now,
            },
        );
        id
    }

    /// The pending login `id`, when it has not expired (an expired one is
    /// dropped). Looking does not extend it.
    pub fn get(&mut self, id: &str, now: Instant) -> Option<Pending> {
        let p = self.map.get(id)?;
        if now.duration_since(p.since) >= PENDING {
            self.map.remove(id);
            return None;
        }
        Some(p.clone())
    }

    /// Ends pending login `id` (taken by a good code, or given up); what it was.
    pub fn close(&mut self, id: &str) -> Option<Pending> {
        self.map.remove(id)
    }
}

/// Failed logins per user name and per source address.
#[derive(Debug, Default)]
pub struct LoginGuard {
    failures: HashMap<String, VecDeque<Instant>>,
}

/// Who a login attempt counts against.
fn keys(user: &str, addr: &str) -> [String; 2] {
    [format!("user\u{1}{user}"), format!("addr\u{1}{addr}")]
}

impl LoginGuard {
    /// How long `user` from `addr` must still wait, when either is locked out.
    pub fn locked(&mut self, user: &str, addr: &str, now: Instant) -> Option<Duration> {
        keys(user, addr)
            .iter()
            .filter_map(|k| {
                let q = self.failures.get_mut(k)?;
                while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                    q.pop_front();
                }
                (q.len() >= MAX_FAILURES).then(|| {
                    let oldest = q.front().copied().unwrap_or(now);
                    WINDOW.saturating_sub(now.duration_since(oldest))
                })
            })
            .max()
    }

    /// Counts a failure; whether `user` or `addr` is locked out from now.
    pub fn failed(&mut self, user: &str, addr: &str, now: Instant) -> bool {
        if self.failures.len() >= MAX_TRACKED {
            self.failures
                .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        for k in keys(user, addr) {
            let q = self.failures.entry(k).or_default();
            q.push_back(now);
            while q.len() > MAX_FAILURES {
                q.pop_front();
            }
        }
        self.locked(user, addr, now).is_some()
    }

    /// A login of `user` succeeded: their name's failures are forgotten
    /// (the address's are not: one good password does not unlock guessing).
    pub fn succeeded(&mut self, user: &str) {
        self.failures.remove(&format!("user\u{1}{user}"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_session_lives_while_used_and_ends_when_idle_or_closed() {
        let t0 = Instant::now();
        let mut s = Sessions::default();
        let id = s.open("budi", "$argon2id$h", t0);
        let a = s.touch(&id, t0 + 7 * 60 * MIN).unwrap();
        assert_eq!(a.user, "budi");
        // Used 7 h in: alive until 8 h after that.
        assert!(s.touch(&id, t0 + 14 * 60 * MIN).is_some());
        assert!(s.touch(&id, t0 + 22 * 60 * MIN + MIN).is_none());
        assert!(s.touch(&id, t0 + 14 * 60 * MIN).is_none(), "ended for good");
        let id = s.open("budi", "$argon2id$h", t0);
        assert_eq!(s.close(&id).unwrap().user, "budi");
        assert!(s.touch(&id, t0).is_none());
        assert!(s.touch("not-a-session", t0).is_none());
    }

    #[test]
    fn five_failures_in_fifteen_minutes_lock_the_name_and_the_address() {
        let t0 = Instant::now();
        let mut g = LoginGuard::default();
        for i in 0..4 {
            assert!(!g.failed("budi", "10.0.0.1", t0 + i * MIN), "failure {i}");
            assert!(g.locked("budi", "10.0.0.1", t0 + i * MIN).is_none());
        }
        assert!(
            g.failed("budi", "10.0.0.1", t0 + 4 * MIN),
            "the fifth locks"
        );
        // Locked for the name from another address, and for the address with another name.
        let left = g.locked("budi", "10.0.0.9", t0 + 5 * MIN).unwrap();
        assert_eq!(left, 10 * MIN, "until the first failure is 15 min old");
        assert!(g.locked("siti", "10.0.0.1", t0 + 5 * MIN).is_some());
        assert!(g.locked("siti", "10.0.0.9", t0 + 5 * MIN).is_none());
        // The window slides: once the oldest failure is 15 min old, it opens.
        assert!(g.locked("budi", "10.0.0.9", t0 + 15 * MIN).is_none());
    }

    #[test]
    fn failures_spread_beyond_the_window_never_lock_and_success_forgets_the_name() {
        let t0 = Instant::now();
        let mut g = LoginGuard::default();
        for i in 0..10 {
            assert!(
                !g.failed("budi", "10.0.0.1", t0 + i * 4 * MIN),
                "failure {i}"
            );
        }
        let mut g = LoginGuard::default();
        for i in 0..4 {
            g.failed("budi", "10.0.0.1", t0 + i * MIN);
        }
        g.succeeded("budi");
        assert!(!g.failed("budi", "10.0.0.2", t0 + 5 * MIN));
        // The address still has its four: one more locks it.
        assert!(g.failed("siti", "10.0.0.1", t0 + 5 * MIN));
    }

    #[test]
    fn a_pending_login_lasts_five_minutes_and_is_taken_once() {
        let t0 = Instant::now();
        let mut p = PendingLogins::default();
        let id = p.open("budi", "$argon2id$h", t0);
        let a = p.get(&id, t0 + 4 * MIN).unwrap();
        assert_eq!(
            (a.user.as_str(), a.password.as_str()),
            ("budi", "$argon2id$h")
        );
        assert_eq!(a.csrf.len(), 64);
        // Looking at it does not extend it.
        assert!(p.get(&id, t0 + 5 * MIN).is_none(), "expired after 5 min");
        assert!(p.get(&id, t0).is_none(), "dropped for good");
        let id = p.open("budi", "$argon2id$h", t0);
        assert_eq!(p.close(&id).unwrap().user, "budi");
        assert!(p.get(&id, t0).is_none(), "taken once");
        assert!(p.get("not-a-login", t0).is_none());
        // It is no session.
        let id = p.open("budi", "$argon2id$h", t0);
        assert!(Sessions::default().touch(&id, t0).is_none());
    }

    #[test]
    fn tokens_are_random_and_compared_whole() {
        let (a, b) = (token(), token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b));
        assert!(!same(&a, &a[..63]));
        assert!(!same("", "x"));
    }
}
