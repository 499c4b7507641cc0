//! Rendering of the core's progress events: a live dashboard on a terminal, plain lines
//! otherwise, nothing with `--json` or `-q` (the summary is the output then).
//!
//! The dashboard has one line per running mailbox (folder, items, MB, rate, ETA) and a
//! header with the totals and the time spent waiting for Graph's throttling, which the
//! Graph client counts (the core does not see HTTP).

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use atlas_core::ports::{Event, Reporter};
use atlas_graph::GraphClient;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::sanitize;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live bars on stderr (a terminal).
    Dashboard,
    /// One line per mailbox (and warnings) on stderr.
    Lines,
    /// Nothing (`--json`, `-q`).
    Silent,
}

impl Mode {
    /// Pick the mode for this process.
    pub fn detect(json: bool, quiet: bool) -> Self {
        if json || quiet {
            Self::Silent
        } else if std::io::stderr().is_terminal() {
            Self::Dashboard
        } else {
            Self::Lines
        }
    }
}

#[derive(Debug)]
struct MailboxLine {
    bar: Option<ProgressBar>,
    folder: String,
    items: u64,
    expected: u64,
    bytes: u64,
    started: Instant,
}

#[derive(Debug)]
struct State {
    mailboxes: HashMap<String, MailboxLine>,
    total_items: u64,
    total_bytes: u64,
    done: u64,
    warnings: Vec<String>,
}

/// A [`Reporter`] for the terminal.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
    header: Option<ProgressBar>,
    client: Option<GraphClient>,
    started: Instant,
    state: Mutex<State>,
}

fn mib(bytes: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // Display only.
    let b = bytes as f64;
    b / (1024.0 * 1024.0)
}

impl Progress {
    /// A reporter in `mode`; `client` (when given) supplies the throttling figures and
    /// `mailboxes` the number of mailboxes of the run, for the header.
    pub fn new(mode: Mode, client: Option<GraphClient>, mailboxes: usize) -> Self {
        let multi = MultiProgress::with_draw_target(if mode == Mode::Dashboard {
            ProgressDrawTarget::stderr_with_hz(8)
        } else {
            ProgressDrawTarget::hidden()
        });
        let header = (mode == Mode::Dashboard).then(|| {
            let bar = multi.add(ProgressBar::new(mailboxes as u64));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{elapsed_precise}] {pos}/{len} mailboxes  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix("atlas backup");
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Self {
            mode,
            multi,
            header,
            client,
            started: Instant::now(),
            state: Mutex::new(State {
                mailboxes: HashMap::new(),
                total_items: 0,
                total_bytes: 0,
                done: 0,
                warnings: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn line(&self, text: &str) {
        match self.mode {
            Mode::Dashboard => {
                let _ = self.multi.println(text);
            }
            Mode::Lines => crate::console::note!("{text}"),
            Mode::Silent => {}
        }
    }

    fn refresh_header(&self, state: &State) {
        let Some(header) = &self.header else { return };
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        #[allow(clippy::cast_precision_loss)] // Display only.
        let rate = state.total_items as f64 / secs;
        let throttle = self.client.as_ref().map_or(String::new(), |c| {
            let s = c.stats();
            format!(
                "  throttled {}× ({:.1} s waited), {} retries",
                s.throttled,
                Duration::from_millis(s.throttle_wait_ms).as_secs_f64(),
                s.retries
            )
        });
        header.set_position(state.done);
        header.set_message(format!(
            "{} items  {:.1} MiB  {rate:.0} items/s{throttle}",
            state.total_items,
            mib(state.total_bytes)
        ));
    }

    /// Warnings collected during the run (also printed as they happened).
    pub fn warnings(&self) -> Vec<String> {
        self.lock().warnings.clone()
    }

    /// Remove the bars before the summary is printed.
    pub fn finish(&self) {
        let state = self.lock();
        for m in state.mailboxes.values() {
            if let Some(bar) = &m.bar {
                bar.finish_and_clear();
            }
        }
        if let Some(h) = &self.header {
            h.finish_and_clear();
        }
    }
}

impl Reporter for Progress {
    #[allow(clippy::too_many_lines)] // One match over the event kinds.
    fn report(&self, event: Event) {
        if self.mode == Mode::Silent {
            // Warnings are still kept for the summary.
            if let Event::Warning { message, .. } = event {
                self.lock().warnings.push(message);
            }
            return;
        }
        let mut state = self.lock();
        match event {
            Event::MailboxStarted { mailbox, folders } => {
                let bar = (self.mode == Mode::Dashboard).then(|| {
                    let bar = self.multi.add(ProgressBar::new(0));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "  {prefix:30!} {bar:20} {pos:>6}/{len:<6} {per_sec:>10} eta {eta:>4}  {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_prefix(sanitize(&mailbox).into_owned());
                    bar
                });
                tracing::debug!(mailbox = %sanitize(&mailbox), folders, "mailbox started");
                state.mailboxes.insert(
                    mailbox,
                    MailboxLine {
                        bar,
                        folder: String::new(),
                        items: 0,
                        expected: 0,
                        bytes: 0,
                        started: Instant::now(),
                    },
                );
            }
            Event::FolderStarted {
                mailbox,
                folder,
                expected,
            } => {
                if let Some(m) = state.mailboxes.get_mut(&mailbox) {
                    m.folder = sanitize(&folder).into_owned();
                    m.expected += expected;
                    if let Some(bar) = &m.bar {
                        bar.set_length(m.expected.max(m.items));
                        bar.set_message(m.folder.clone());
                    }
                }
            }
            Event::Items {
                mailbox,
                count,
                bytes,
                ..
            } => {
                state.total_items += count;
                state.total_bytes += bytes;
                if let Some(m) = state.mailboxes.get_mut(&mailbox) {
                    m.items += count;
                    m.bytes += bytes;
                    if let Some(bar) = &m.bar {
                        bar.set_length(m.expected.max(m.items));
                        bar.set_position(m.items);
                        bar.set_message(format!("{:.1} MiB  {}", mib(m.bytes), m.folder));
                    }
                }
            }
            Event::ItemFailed {
                mailbox,
                folder,
                item,
                reason,
            } => {
                drop(state);
                self.line(&format!(
                    "  ! {}: item {} in {} could not be read: {}",
                    sanitize(&mailbox),
                    sanitize(&item),
                    sanitize(&folder),
                    sanitize(&reason)
                ));
                return;
            }
            Event::FolderDone {
                mailbox,
                folder,
                stored,
            } => {
                // Plain-line mode keeps to one line per mailbox; folder detail is in the
                // summary's completeness report, and here with -v.
                tracing::info!(
                    mailbox = %sanitize(&mailbox),
                    folder = %sanitize(&folder),
                    stored,
                    "folder done"
                );
            }
            Event::MailboxDone { mailbox, complete } => {
                state.done += 1;
                if let Some(m) = state.mailboxes.remove(&mailbox) {
                    if let Some(bar) = &m.bar {
                        bar.finish_and_clear();
                        self.multi.remove(bar);
                    }
                    let secs = m.started.elapsed().as_secs_f64();
                    let text = format!(
                        "{} {}: {} items, {:.1} MiB in {secs:.1} s",
                        if complete { "✓" } else { "◐" },
                        sanitize(&mailbox),
                        m.items,
                        mib(m.bytes)
                    );
                    drop(state);
                    self.line(&text);
                    let state = self.lock();
                    self.refresh_header(&state);
                    return;
                }
            }
            Event::Warning { mailbox, message } => {
                let text = match &mailbox {
                    Some(m) => format!("warning: {}: {}", sanitize(m), sanitize(&message)),
                    None => format!("warning: {}", sanitize(&message)),
                };
                state.warnings.push(message);
                drop(state);
                self.line(&text);
                return;
            }
            _ => {}
        }
        self.refresh_header(&state);
    }
}
