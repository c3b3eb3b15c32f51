//! "Your devices": a user's sessions as the page lists them, and the revokes behind its
//! buttons. The routes see the sessions' user index through [`Devices`], a trait object, so
//! they stay the same whatever store keeps the sessions.
//!
//! A device is named by its [`SessionHandle`], never by its session id: the id is the bearer
//! secret in the cookie, the handle is safe to print in a page and post back in a form.

use std::time::Duration;

use strata::{
    sessions::{SessionHandle, SessionInfo, SessionRoster, StrataSessionStore},
    Store,
};
use tower_sessions::{
    cookie::time::OffsetDateTime,
    session::{Id, Record},
};

use super::backend::BoxFuture;

/// The longest user agent kept in a session, in characters: enough for any real browser's,
/// and a client cannot make every save of its session carry kilobytes of header.
pub const MAX_USER_AGENT_CHARS: usize = 256;

/// A user's sessions, through the user index of the sessions' store.
pub trait Devices: Send + Sync {
    /// The live sessions of `user`, most recently seen first.
    fn list<'a>(&'a self, user: &'a str) -> BoxFuture<'a, strata::Result<Vec<SessionInfo>>>;
    /// Signs out `user`'s session `handle`; false if `user` has no such live session.
    fn revoke<'a>(
        &'a self,
        user: &'a str,
        handle: &'a SessionHandle,
    ) -> BoxFuture<'a, strata::Result<bool>>;
    /// Signs out every session of `user`.
    fn revoke_all<'a>(&'a self, user: &'a str) -> BoxFuture<'a, strata::Result<usize>>;
    /// Signs out every session of `user` but `keep`.
    fn revoke_all_except<'a>(
        &'a self,
        user: &'a str,
        keep: &'a Id,
    ) -> BoxFuture<'a, strata::Result<usize>>;
}

impl<S, I> Devices for StrataSessionStore<S, I>
where
    S: Store<String, Record> + Sync + 'static,
    I: Store<String, SessionRoster> + Sync + 'static,
{
    fn list<'a>(&'a self, user: &'a str) -> BoxFuture<'a, strata::Result<Vec<SessionInfo>>> {
        Box::pin(self.sessions_of(user))
    }

    fn revoke<'a>(
        &'a self,
        user: &'a str,
        handle: &'a SessionHandle,
    ) -> BoxFuture<'a, strata::Result<bool>> {
        Box::pin(StrataSessionStore::revoke(self, user, handle))
    }

    fn revoke_all<'a>(&'a self, user: &'a str) -> BoxFuture<'a, strata::Result<usize>> {
        Box::pin(StrataSessionStore::revoke_all(self, user))
    }

    fn revoke_all_except<'a>(
        &'a self,
        user: &'a str,
        keep: &'a Id,
    ) -> BoxFuture<'a, strata::Result<usize>> {
        Box::pin(StrataSessionStore::revoke_all_except(self, user, keep))
    }
}

/// One row of the devices panel, every field ready to print.
pub struct Device {
    /// The session's handle, posted back by its "Revoke" button.
    pub handle: SessionHandle,
    /// "Firefox on macOS", from the user agent.
    pub name: String,
    /// When the session signed in, as a UTC date.
    pub created: String,
    /// How long ago it last made a request.
    pub last_seen: String,
    /// True for the session of the request showing the page.
    pub this_device: bool,
}

impl Device {
    /// The row for `info`; `current` is the handle of the request's own session.
    pub fn of(info: SessionInfo, current: Option<&SessionHandle>, now: OffsetDateTime) -> Device {
        Device {
            this_device: current == Some(&info.handle),
            name: device_name(info.user_agent.as_deref()),
            created: utc_date(info.created),
            last_seen: super::pages::ago(since(info.last_seen, now)),
            handle: info.handle,
        }
    }
}

/// The time from `then` to `now`, zero if `then` is in the future (another node's clock).
fn since(then: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(now - then).unwrap_or_default()
}

/// `2026-12-05 16:20 UTC`.
fn utc_date(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// A user agent as a person names their device: "Chrome on Linux", "curl". Only the few
/// browsers and systems a demo meets are named; anything else shows its first product token.
pub fn device_name(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.map(str::trim).filter(|ua| !ua.is_empty()) else {
        return "Unknown device".to_owned();
    };
    let browser = browser(ua);
    match (browser, system(ua)) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(browser), None) => browser.to_owned(),
        (None, _) => first_product(ua),
    }
}

/// The browser, checked in an order where each token's impostors come first (Edge and Opera
/// say "Chrome"; Chrome says "Safari").
fn browser(ua: &str) -> Option<&'static str> {
    const BROWSERS: [(&str, &str); 7] = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("HeadlessChrome/", "Headless Chrome"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ];
    BROWSERS
        .iter()
        .find(|(token, _)| ua.contains(token))
        .map(|(_, name)| *name)
}

/// The operating system, phones first (Android says "Linux", iOS says "Mac OS X").
fn system(ua: &str) -> Option<&'static str> {
    const SYSTEMS: [(&str, &str); 7] = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ];
    SYSTEMS
        .iter()
        .find(|(token, _)| ua.contains(token))
        .map(|(_, name)| *name)
}

/// The first product token without its version (`python-requests/2.32` → `python-requests`),
/// at most 40 characters.
fn first_product(ua: &str) -> String {
    let token = ua.split_whitespace().next().unwrap_or(ua);
    let product = token.split('/').next().unwrap_or(token);
    product.chars().take(40).collect()
}

/// `user_agent` cut to [`MAX_USER_AGENT_CHARS`] characters.
pub fn bounded_user_agent(user_agent: &str) -> String {
    user_agent.chars().take(MAX_USER_AGENT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_named_as_people_name_devices() {
        let cases = [
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "Chrome on Linux"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14.7; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox on macOS"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", "Safari on iOS"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", "Edge on Windows"),
            ("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", "Chrome on Android"),
            ("curl/8.11.0", "curl"),
            ("python-requests/2.32.3", "python-requests"),
            ("", "Unknown device"),
        ];
        for (ua, want) in cases {
            assert_eq!(device_name(Some(ua)), want, "{ua}");
        }
        assert_eq!(device_name(None), "Unknown device");
    }

    #[test]
    fn a_long_user_agent_is_cut_in_characters() {
        let ua = "é".repeat(1000);
        assert_eq!(
            bounded_user_agent(&ua).chars().count(),
            MAX_USER_AGENT_CHARS
        );
        assert_eq!(device_name(Some(&"x".repeat(1000))).chars().count(), 40);
    }
}
