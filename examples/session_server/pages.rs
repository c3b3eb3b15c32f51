//! The pages, as maud templates: every interpolated value is HTML-escaped by the template
//! engine, so a name like `<script>` is shown, never run.

use std::time::Duration;

use maud::{html, Markup, DOCTYPE};

use super::devices::Device;

/// What the page says about this process and its store.
pub struct About<'a> {
    /// The store holding the sessions (secrets redacted).
    pub store: &'a str,
    /// This process's id.
    pub pid: u32,
    /// How long ago this process started.
    pub up: Duration,
}

/// The signed-in page.
pub struct Home<'a> {
    /// The user's name.
    pub name: &'a str,
    /// Visits in this session, this one included.
    pub visits: u64,
    /// The user's sessions, most recently seen first.
    pub devices: &'a [Device],
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · strata sessions" }
                link rel="stylesheet" href="/static/style.css";
            }
            body { main { (body) } }
        }
    }
}

/// "started 4 s ago", in the largest whole unit.
pub fn ago(elapsed: Duration) -> String {
    match elapsed.as_secs() {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s => format!("{} h ago", s / 3600),
    }
}

fn server_line(about: &About) -> Markup {
    html! {
        p.server {
            "This server (pid " (about.pid) ") started " strong { (ago(about.up)) } "."
        }
        (store_line(about))
    }
}

fn store_line(about: &About) -> Markup {
    html! { p.store { "Sessions are kept in " code { (about.store) } "." } }
}

/// The sign-in form; `problem` explains why the last attempt was refused.
pub fn sign_in(about: &About, problem: Option<&str>) -> Markup {
    layout(
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some(problem) = problem { p.problem role="alert" { (problem) } }
            form method="post" action="/sign-in" {
                input name="name" placeholder="your name" maxlength="64" required autofocus;
                " " button { "Sign in" }
            }
            p { "Your session is kept by strata: restart the server — even with " code { "kill -9" } " — and you stay signed in." }
            (server_line(about))
        },
    )
}

/// The signed-in page: who you are, the proof that your session outlived the restart, the store.
pub fn home(about: &About, home: &Home) -> Markup {
    layout(
        "Signed in",
        html! {
            h1 { "Hello, " (home.name) }
            p.visits { "visit #" (home.visits) }
            p.point {
                "This server (pid " (about.pid) ") started " strong { (ago(about.up)) }
                " — you are still signed in."
            }
            (store_line(about))
            (devices_panel(home.devices))
            (stats_panel())
            form method="post" action="/sign-out" { button { "Sign out" } }
            script src="/static/panel.js" {}
        },
    )
}

/// "Your devices": one row per session of the user, a "Revoke" button on every other one, and
/// the two sign-out-everywhere buttons. Rows name sessions by handle, never by id.
fn devices_panel(devices: &[Device]) -> Markup {
    let others = devices.iter().filter(|d| !d.this_device).count();
    html! {
        section.devices aria-label="your devices" {
            h2 { "Your devices" }
            p.hint {
                "Every browser signed in as you. Revoking one signs it out on its next request; \
                 it cannot save its session back."
            }
            table {
                thead {
                    tr { th { "Device" } th.when { "Signed in" } th.when { "Last seen" } th {} }
                }
                tbody { @for device in devices { (device_row(device)) } }
            }
            div.actions {
                @if others > 0 {
                    form.inline method="post" action="/devices/revoke-others" {
                        button { "Sign out everywhere else" }
                    }
                }
                form.inline method="post" action="/devices/revoke-all" {
                    button.danger { "Sign out everywhere" }
                }
            }
        }
    }
}

fn device_row(device: &Device) -> Markup {
    html! {
        tr.device.current[device.this_device] {
            td {
                (device.name)
                @if device.this_device { " " span.badge { "this device" } }
            }
            td.when { (device.created) }
            td.when { @if device.this_device { "now" } @else { (device.last_seen) } }
            td.revoke {
                @if !device.this_device {
                    form.inline method="post" action="/devices/revoke" {
                        input type="hidden" name="handle" value=(device.handle);
                        button.small { "Revoke" }
                    }
                }
            }
        }
    }
}

/// The store's live numbers, filled in and refreshed by `/static/panel.js` from `/stats.json`:
/// counting the entries and the directory's bytes costs a scan, too much for every page view
/// (it made `GET /` four times slower).
fn stats_panel() -> Markup {
    html! {
        section.stats aria-label="store statistics" {
            h2 { "The store, live" }
            dl {
                dt { "sessions stored" } dd #entries { "…" }
                dt { "hits" } dd #hits { "…" }
                dt { "misses" } dd #misses { "…" }
                dt { "bytes on disk" } dd #disk_bytes { "…" }
            }
        }
    }
}

/// A plain error page: a title and what to do.
pub fn error(title: &str, advice: &str) -> Markup {
    layout(
        title,
        html! {
            h1 { (title) }
            p { (advice) }
            p { a href="/" { "Back to the start" } }
        },
    )
}

/// The style sheet (served from `/static/style.css`, as the CSP allows no inline style).
pub const STYLE: &str = include_str!("static/style.css");

/// Refreshes the stats panel every two seconds (no framework: `fetch` and `textContent`).
pub const PANEL_JS: &str = include_str!("static/panel.js");
