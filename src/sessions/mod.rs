//! tower-sessions on strata: keep a web app's sessions in any [`Store`](crate::Store), list and
//! revoke a user's sessions.
//!
//! [`StrataSessionStore`] implements `tower_sessions_core::SessionStore` over any
//! `Store<String, Record>` — a `MemoryStore` for one process, a `DiskStore` so sessions survive a
//! restart (nobody gets logged out by a deploy), a `RedisStore` so every node sees them.
//!
//! How the tower-sessions contract maps onto the store:
//! - the key is the session id as tower-sessions prints it (22 URL-safe base64 characters); give
//!   the store a namespace such as `sessions` so `redis-cli --scan --pattern 'sessions:*'` lists
//!   them;
//! - the record's absolute `expiry_date` becomes the entry's TTL, so the store expires the
//!   session by itself; a record whose expiry date has already passed is deleted, not written;
//! - `create` writes with [`Store::put_new`](crate::Store::put_new) and draws a new id on a
//!   collision (as the tower-sessions Redis store does with `SET NX`), so two sessions never
//!   share an id;
//! - `save` writes with [`Store::replace`](crate::Store::replace) (`SET XX` on Redis): only over
//!   a live entry, never re-creating a deleted one;
//! - `load` returns `None` for a missing, expired or undecodable record; an undecodable one (a
//!   tampered or outdated entry) is logged with `tracing::warn!` and deleted;
//! - `ExpiredDeletion::delete_expired` removes records whose expiry date has passed and records
//!   that no longer decode (only needed for a store of your own that ignores TTLs);
//! - an error handed to tower-sessions (which logs it) names a session by its [`SessionHandle`],
//!   never its id, whatever the store put in the message (`GET sessions:<id>` from Redis).
//!
//! # Guarantees
//! - **A logout sticks.** Once `delete` (`session.flush()`, `session.cycle_id()`, a
//!   [`revoke`](StrataSessionStore::revoke)) has returned, no request that loaded the session
//!   before can write it back: its `save` replaces only a live entry, atomically in every strata
//!   store. A stolen cookie dies with the victim's sign-out. Forced by
//!   `tests/sessions_logout.rs` (a request parked between its load and its save while the
//!   session is signed out, on MemoryStore, DiskStore and Redis).
//! - **Sign out everywhere reaches every session.** With the user index on, every live session
//!   signed in as a user is named in that user's roster by the time its `create` (or the
//!   `save` that set the user) returns; if the roster cannot be written the session is removed
//!   and the request fails. A sign-in racing [`revoke_all`](StrataSessionStore::revoke_all)
//!   is either revoked or listed by the next `sessions_of`. Forced by
//!   `tests/sessions_index.rs` (roster writes parked or failed with a fault wrapper).
//! - **Last save wins** among concurrent requests of one live session: each request saves its
//!   own copy of the record, as with every tower-sessions store (a counter bumped by 8 parallel
//!   requests can lose increments; keep such data in its own key and use
//!   [`Store::incr`](crate::Store::incr)).
//! - **Restarts**: a `MemoryStore` loses every session; a `DiskStore` keeps every session whose
//!   save was acknowledged (with `Writes::Sync`, even through `kill -9`), with its expiry; Redis
//!   keeps what its own persistence keeps. The user index lives in a store of its own and
//!   survives exactly as that store does.
//! - As the near half of tower-sessions' `CachingSessionStore` (see
//!   [`near_cache`](StrataSessionStore::near_cache)) the near copy can be written back by an
//!   in-flight request; the far store keeps the guarantee.
//!
//! ```
//! use strata::{sessions::StrataSessionStore, MemoryStore};
//! use tower_sessions_core::session::Record;
//!
//! let store = MemoryStore::<String, Record>::builder().build()?;
//! let sessions = StrataSessionStore::new(store);
//! // `SessionManagerLayer::new(sessions)` in an axum app.
//! # let _ = sessions;
//! # Ok::<(), strata::Error>(())
//! ```
//!
//! # Every device of a user
//! [`with_user_index`](StrataSessionStore::with_user_index) keeps, in a second store, one
//! [`SessionRoster`] per user under the user id: the ids of that user's sessions (at most
//! [`with_max_sessions_per_user`](StrataSessionStore::with_max_sessions_per_user), 100 by
//! default; a sign-in beyond it signs out the user's oldest session). What the app does:
//! - on sign-in: `session.cycle_id()` (against fixation), then
//!   `session.insert("user_id", user)` — the key given to `with_user_index`; its value is a
//!   JSON string or number. The session joins its user's roster when it is saved at the end of
//!   the request;
//! - on every request, if it wants user agents listed: `session.insert(USER_AGENT_KEY, ua)`
//!   (see [`USER_AGENT_KEY`]); `created` and `last_seen` are kept by the store in the record
//!   data (under [`CREATED_KEY`] and [`LAST_SEEN_KEY`]; `last_seen` is the time of the last
//!   save, so use `SessionManagerLayer::with_always_save(true)` to have it bumped by every
//!   request);
//! - list with [`sessions_of`](StrataSessionStore::sessions_of), show each
//!   [`SessionHandle`] (never the session id), and revoke with
//!   [`revoke`](StrataSessionStore::revoke), [`revoke_all`](StrataSessionStore::revoke_all) or
//!   [`revoke_all_except`](StrataSessionStore::revoke_all_except).
//!
//! Costs: `sessions_of` and the revokes read one roster (one key) and the records it names (one
//! batched read): O(sessions of that user) on every store, Redis Cluster included, whatever the
//! total number of sessions. A save that changes neither the user nor pushes the expiry date
//! past what the roster covers (it covers each session's remaining life twice over, so about
//! one save per session lifetime does) writes only the record. Rosters change only with
//! [`Store::compare_and_set`](crate::Store::compare_and_set), so concurrent sign-ins and revokes
//! never lose each other's changes. A roster can name sessions that are gone (a crash between
//! two writes, a save that lost to a revoke); readers skip and prune them.
//!
//! ```
//! use strata::{sessions::{SessionRoster, StrataSessionStore}, MemoryStore};
//! use tower_sessions_core::{session::{Id, Record}, SessionStore};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sessions = StrataSessionStore::new(MemoryStore::<String, Record>::builder().build()?)
//!     .with_user_index(MemoryStore::<String, SessionRoster>::builder().build()?, "user_id");
//!
//! // What tower-sessions does when a request signs in as "ada" from two devices:
//! let expiry = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
//! for ua in ["Firefox", "Safari"] {
//!     let mut record = Record { id: Id::default(), data: Default::default(), expiry_date: expiry };
//!     record.data.insert("user_id".into(), "ada".into());
//!     record.data.insert(strata::sessions::USER_AGENT_KEY.into(), ua.into());
//!     sessions.create(&mut record).await?;
//! }
//! let devices = sessions.sessions_of("ada").await?;
//! assert_eq!(devices.len(), 2);
//! // A page shows `devices[0].handle` and posts it back to sign that device out:
//! assert!(sessions.revoke("ada", &devices[0].handle).await?);
//! assert_eq!(sessions.revoke_all("ada").await?, 1, "sign out everywhere");
//! assert!(sessions.sessions_of("ada").await?.is_empty());
//! # Ok(()) }
//! ```

mod index;
mod info;
mod roster;
mod store;
mod users;

pub use info::{SessionHandle, SessionInfo};
pub use roster::{NoIndex, SessionRoster};
pub use store::StrataSessionStore;

/// The record data key under which the app stores the session's user agent (a JSON string),
/// for [`SessionInfo::user_agent`]: `session.insert(USER_AGENT_KEY, user_agent).await?`.
pub const USER_AGENT_KEY: &str = "strata.user_agent";

/// The record data key under which the store notes when the session id was created (Unix
/// milliseconds), for [`SessionInfo::created`]. Set by `create` when the user index is on.
pub const CREATED_KEY: &str = "strata.created";

/// The record data key under which the store notes when the session was last saved (Unix
/// milliseconds), for [`SessionInfo::last_seen`]. Set by `create` and `save` when the user
/// index is on.
pub const LAST_SEEN_KEY: &str = "strata.last_seen";
