//! Interruption: Ctrl+C (SIGINT), SIGTERM and SIGHUP, for every command.
//!
//! systemd's stop, `docker stop`, `timeout` and Kubernetes send SIGTERM; a closed SSH
//! session sends SIGHUP. All three mean "stop", and none may leave the repository stuck, so
//! all three are handled like Ctrl+C (SPEC §5's two stages):
//!
//! - A command that can stop gracefully (backup, restore) takes the process's [`Cancel`]
//!   with [`work_cancel`]. The first signal asks it to finish the items in flight and
//!   commit what is stored (a partial snapshot, exit 2); a second one stops at once.
//! - Any other command (save, verify, forget/prune, …) is stopped at the first signal, at
//!   an await point: its future is dropped, which removes its temporary output (drop
//!   guards), and the exit path that follows releases what the process holds in its
//!   repositories (leases, the prune lock; see `commands::context::release_held`).
//!
//! Either way the process exits through [`run`] with a documented exit code, never by the
//! signal's default action (which would exit 130/143/129 with leases left behind).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use atlas_core::service::Cancel;
use tokio::sync::watch;

use crate::console::note;
use crate::exit::Exit;

struct Shared {
    cancel: Arc<Cancel>,
    /// Whether the running command watches `cancel` (stops gracefully by itself).
    observed: AtomicBool,
    quiet: bool,
    /// Signals received so far.
    count: watch::Sender<u32>,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| Shared {
        cancel: Arc::new(Cancel::new()),
        observed: AtomicBool::new(false),
        quiet: false,
        count: watch::channel(0).0,
    })
}

/// Start listening for the stop signals. Call once, inside the runtime, before the command
/// runs; from then on these signals never terminate the process by themselves.
pub fn install(quiet: bool) {
    let _ = SHARED.set(Shared {
        cancel: Arc::new(Cancel::new()),
        observed: AtomicBool::new(false),
        quiet,
        count: watch::channel(0).0,
    });
    tokio::spawn(async {
        let mut signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot listen for stop signals: {e}");
                return;
            }
        };
        while let Some(name) = signals.next().await {
            received(name);
        }
    });
}

fn received(name: &str) {
    let s = shared();
    s.cancel.escalate();
    s.count.send_modify(|n| *n += 1);
    if s.quiet {
        return;
    }
    let observed = s.observed.load(Ordering::SeqCst);
    if !observed {
        note!("\n{name}: stopping.");
    } else if s.cancel.is_hard() {
        note!(
            "\n{name}: stopping now; nothing more is committed. The next run resumes from the last snapshot."
        );
    } else {
        note!(
            "\n{name}: finishing the items in flight and committing a partial snapshot. Press Ctrl+C again to stop at once."
        );
    }
}

/// The process's cancellation token, for a command that stops gracefully by itself: from
/// now on the first signal only sets it (see the module docs).
pub fn work_cancel() -> Arc<Cancel> {
    let s = shared();
    s.observed.store(true, Ordering::SeqCst);
    Arc::clone(&s.cancel)
}

/// Run a command until it ends or a signal stops it (the first signal for a command that
/// does not watch [`work_cancel`], the second for one that does). A stopped command's
/// future is dropped; the caller's exit path then releases what the process holds.
pub async fn run<F>(command: F) -> anyhow::Result<Exit>
where
    F: Future<Output = anyhow::Result<Exit>>,
{
    let s = shared();
    let mut count = s.count.subscribe();
    let stop = async {
        loop {
            let n = *count.borrow_and_update();
            let observed = s.observed.load(Ordering::SeqCst);
            if n >= 2 || (n >= 1 && !observed) {
                return;
            }
            if count.changed().await.is_err() {
                // No sender: no signal can come any more.
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        result = command => result,
        () = stop => Err(anyhow::Error::new(Interrupted)),
    }
}

/// The command was stopped by a signal before it finished.
#[derive(Debug, thiserror::Error)]
#[error("interrupted before the command finished; nothing it had not completed was kept")]
pub struct Interrupted;

#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Option<&'static str> {
        tokio::select! {
            s = self.int.recv() => s.map(|()| "Interrupted"),
            s = self.term.recv() => s.map(|()| "SIGTERM"),
            s = self.hup.recv() => s.map(|()| "SIGHUP"),
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) -> Option<&'static str> {
        tokio::signal::ctrl_c().await.ok().map(|()| "Interrupted")
    }
}
