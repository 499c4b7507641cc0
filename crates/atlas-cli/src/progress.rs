//! Rendering of the core's progress events: live bars on a terminal, periodic plain lines
//! otherwise, nothing with `--json` or `-q` (the summary is the output then).
//!
//! Two kinds of work report progress. Mailbox runs (backup, restore, migrate) send
//! per-mailbox and per-folder events: the dashboard has one line per running mailbox and a
//! header with the totals and the time spent waiting for Graph's throttling, which the
//! Graph client counts (the core does not see HTTP). Other long steps (verify, save,
//! prune, replicate) send [`Task`] events: one bar per step.
//!
//! Every bar fits an 80-column terminal (fixed parts stay under 60 columns, the rest is a
//! message cut to the width), and rates are rounded ([`crate::output::rate`]). Without a
//! terminal, a line says when a step starts and ends, and every [`LINE_INTERVAL`] in
//! between what is done so far, so a log of a nightly run shows it moving.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atlas_core::ports::{Event, Reporter, Task};
use atlas_graph::GraphClient;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::console::note;
use crate::output::{self, sanitize};

/// How often a plain-line progress report is written while a step runs.
pub const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live bars on stderr (a terminal).
    Dashboard,
    /// Plain lines on stderr: starts, ends, warnings, and a line every [`LINE_INTERVAL`].
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
struct TaskLine {
    bar: Option<ProgressBar>,
    total: Option<u64>,
    total_bytes: Option<u64>,
    done: u64,
    bytes: u64,
    started: Instant,
}

#[derive(Debug)]
struct State {
    mailboxes: HashMap<String, MailboxLine>,
    tasks: HashMap<Task, TaskLine>,
    total_items: u64,
    total_bytes: u64,
    done: u64,
    warnings: Vec<String>,
    /// When the last periodic plain line was written.
    last_line: Instant,
}

/// Where plain lines go: stderr, or a buffer in tests.
type LineSink = Box<dyn Fn(&str) + Send + Sync>;
/// The time source: `Instant::now`, or a hand-moved clock in tests.
type Now = Box<dyn Fn() -> Instant + Send + Sync>;

/// A [`Reporter`] for the terminal.
pub struct Progress {
    mode: Mode,
    title: String,
    multi: MultiProgress,
    header: Option<ProgressBar>,
    mailboxes: usize,
    client: Option<GraphClient>,
    started: Instant,
    state: Mutex<State>,
    sink: LineSink,
    now: Now,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("mode", &self.mode)
            .field("title", &self.title)
            .finish_non_exhaustive()
    }
}

// Each template is exactly 80 columns at most: fixed-width fields, and the free text cut
// (`!`) to what is left. (indicatif's `wide_msg` misjudges the width of padded fields.)
const MAILBOX_TEMPLATE: &str = "  {prefix:24!} {bar:16} {pos:>7}/{len:<7} {msg:20!}";
const HEADER_TEMPLATE: &str =
    "{prefix:15!.bold} {elapsed_precise} {pos:>5}/{len:<5} mailboxes {msg:33!}";
const TASK_TEMPLATE: &str = "{prefix:20!.bold} {bar:20} {pos:>8}/{len:<8} {msg:20!}";
const TASK_SPINNER: &str = "{prefix:20!.bold} {spinner} {pos:>8} {msg:48!}";

/// Columns of the free text after a bar.
const MSG: usize = 20;

/// `text` cut to `columns` characters. indicatif cuts by bytes, which leaves a name with
/// "ü" or "—" too wide, so every name and message is cut here first.
fn fit(text: &str, columns: usize) -> String {
    text.chars().take(columns).collect()
}

fn fit_owned(text: String, columns: usize) -> String {
    if text.chars().count() <= columns {
        text
    } else {
        fit(&text, columns)
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

#[allow(clippy::cast_precision_loss)] // Display only.
fn per_second(count: u64, since: Duration) -> f64 {
    count as f64 / since.as_secs_f64().max(0.001)
}

impl Progress {
    /// A reporter for a backup: `client` (when given) supplies the throttling figures and
    /// `mailboxes` the number of mailboxes of the run, for the header.
    pub fn new(mode: Mode, client: Option<GraphClient>, mailboxes: usize) -> Self {
        Self::build(mode, "atlas backup", client, Some(mailboxes))
    }

    /// A reporter for another mailbox run (`atlas restore`, `atlas migrate`), headed by
    /// `title`.
    pub fn titled(mode: Mode, title: &str, client: Option<GraphClient>, mailboxes: usize) -> Self {
        Self::build(mode, title, client, Some(mailboxes))
    }

    /// A reporter for commands whose long steps are [`Task`]s (verify, save, forget and
    /// prune, replicate): no mailbox header.
    pub fn for_tasks(mode: Mode, title: &str) -> Self {
        Self::build(mode, title, None, None)
    }

    fn build(
        mode: Mode,
        title: &str,
        client: Option<GraphClient>,
        mailboxes: Option<usize>,
    ) -> Self {
        let target = if mode == Mode::Dashboard {
            ProgressDrawTarget::stderr_with_hz(8)
        } else {
            ProgressDrawTarget::hidden()
        };
        Self::build_on(mode, title, client, mailboxes, target)
    }

    fn build_on(
        mode: Mode,
        title: &str,
        client: Option<GraphClient>,
        mailboxes: Option<usize>,
        target: ProgressDrawTarget,
    ) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        let header = match (mode, mailboxes) {
            (Mode::Dashboard, Some(n)) => {
                let bar = multi.add(ProgressBar::new(n as u64));
                bar.set_style(style(HEADER_TEMPLATE));
                bar.set_prefix(fit(title, 15));
                bar.enable_steady_tick(Duration::from_millis(250));
                Some(bar)
            }
            _ => None,
        };
        let now = Instant::now();
        Self {
            mode,
            title: title.to_owned(),
            multi,
            header,
            mailboxes: mailboxes.unwrap_or(0),
            client,
            started: now,
            state: Mutex::new(State {
                mailboxes: HashMap::new(),
                tasks: HashMap::new(),
                total_items: 0,
                total_bytes: 0,
                done: 0,
                warnings: Vec::new(),
                last_line: now,
            }),
            sink: Box::new(|text| note!("{text}")),
            now: Box::new(Instant::now),
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
            Mode::Lines => (self.sink)(text),
            Mode::Silent => {}
        }
    }

    fn throttling(&self) -> String {
        self.client.as_ref().map_or(String::new(), |c| {
            let s = c.stats();
            if s.throttled == 0 && s.retries == 0 {
                return String::new();
            }
            format!(
                "  throttled {}× ({} waited), {} retries",
                s.throttled,
                output::duration(Duration::from_millis(s.throttle_wait_ms)),
                s.retries
            )
        })
    }

    fn refresh_header(&self, state: &State) {
        let Some(header) = &self.header else { return };
        header.set_position(state.done);
        header.set_message(fit_owned(
            format!(
                "{} items  {}  {}{}",
                state.total_items,
                output::size(state.total_bytes),
                output::rate(
                    per_second(state.total_items, self.started.elapsed()),
                    "items"
                ),
                self.throttling()
            ),
            33,
        ));
    }

    /// In plain-line mode, the periodic line when [`LINE_INTERVAL`] has passed since the
    /// last one: every running task, or the mailbox run's totals.
    fn periodic(&self, state: &mut State) {
        if self.mode != Mode::Lines {
            return;
        }
        let now = (self.now)();
        if now.duration_since(state.last_line) < LINE_INTERVAL {
            return;
        }
        state.last_line = now;
        let mut lines = Vec::new();
        for (task, t) in &state.tasks {
            lines.push(format!(
                "{}: {} {}",
                task.label(),
                counted(t.done, t.total, task.unit()),
                bytes_so_far(t.bytes, t.total_bytes, now.duration_since(t.started))
            ));
        }
        if !state.mailboxes.is_empty() || state.done > 0 {
            let elapsed = now.duration_since(self.started);
            lines.push(format!(
                "{}: {}/{} mailboxes done, {} items, {}, {}{}",
                self.title,
                state.done,
                self.mailboxes,
                state.total_items,
                output::size(state.total_bytes),
                output::rate(per_second(state.total_items, elapsed), "items"),
                self.throttling()
            ));
        }
        for l in lines {
            (self.sink)(&l);
        }
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
        for t in state.tasks.values() {
            if let Some(bar) = &t.bar {
                bar.finish_and_clear();
            }
        }
        if let Some(h) = &self.header {
            h.finish_and_clear();
        }
    }

    fn task_started(&self, state: &mut State, task: Task, total: Option<u64>, bytes: Option<u64>) {
        if total == Some(0) {
            // Nothing to do (no pack to repack, nothing to delete): not worth a line.
            state.tasks.remove(&task);
            return;
        }
        let bar = (self.mode == Mode::Dashboard).then(|| {
            let bar = self.multi.add(match total {
                Some(n) => ProgressBar::new(n),
                None => ProgressBar::new_spinner(),
            });
            bar.set_style(style(if total.is_some() {
                TASK_TEMPLATE
            } else {
                TASK_SPINNER
            }));
            bar.set_prefix(task.label());
            bar.set_message(fit(task.unit(), MSG));
            bar
        });
        if self.mode == Mode::Lines {
            let size = bytes.map_or(String::new(), |b| format!(", {}", output::size(b)));
            (self.sink)(&match total {
                Some(n) => format!("{}: {n} {}{size}", task.label(), task.unit()),
                None => format!("{}…", task.label()),
            });
        }
        state.tasks.insert(
            task,
            TaskLine {
                bar,
                total,
                total_bytes: bytes,
                done: 0,
                bytes: 0,
                started: (self.now)(),
            },
        );
    }

    fn task_progress(&self, state: &mut State, task: Task, done: u64, bytes: u64) {
        let now = (self.now)();
        let Some(t) = state.tasks.get_mut(&task) else {
            return;
        };
        t.done += done;
        t.bytes += bytes;
        if let Some(bar) = &t.bar {
            bar.set_position(t.done);
            let text = bytes_so_far(t.bytes, t.total_bytes, now.duration_since(t.started));
            bar.set_message(fit(&text, if t.total.is_some() { MSG } else { 48 }));
        }
        self.periodic(state);
    }

    fn task_done(&self, state: &mut State, task: Task) {
        let Some(t) = state.tasks.remove(&task) else {
            return;
        };
        if let Some(bar) = &t.bar {
            bar.finish_and_clear();
            self.multi.remove(bar);
        }
        let took = (self.now)().duration_since(t.started);
        let size = if t.bytes > 0 {
            format!(", {}", output::size(t.bytes))
        } else {
            String::new()
        };
        self.line(&format!(
            "{}: {} {}{size} in {}",
            task.label(),
            t.done,
            task.unit(),
            output::duration(took)
        ));
    }
}

/// `12/40 packs`, or `12 packs` without a total.
fn counted(done: u64, total: Option<u64>, unit: &str) -> String {
    match total {
        Some(n) => format!("{done}/{n} {unit}"),
        None => format!("{done} {unit}"),
    }
}

/// `300.0 MiB of 1.2 GiB, 45.0 MiB/s`, or empty when nothing is counted in bytes.
fn bytes_so_far(bytes: u64, total: Option<u64>, since: Duration) -> String {
    if bytes == 0 && total.is_none_or(|t| t == 0) {
        return String::new();
    }
    let of = total.map_or(String::new(), |t| format!(" of {}", output::size(t)));
    format!(
        "{}{of}, {}",
        output::size(bytes),
        output::byte_rate(bytes, since.as_secs_f64())
    )
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
                    bar.set_style(style(MAILBOX_TEMPLATE));
                    bar.set_prefix(fit(&sanitize(&mailbox), 24));
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
                        started: (self.now)(),
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
                        bar.set_message(fit(&m.folder, MSG));
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
                let now = (self.now)();
                if let Some(m) = state.mailboxes.get_mut(&mailbox) {
                    m.items += count;
                    m.bytes += bytes;
                    if let Some(bar) = &m.bar {
                        bar.set_length(m.expected.max(m.items));
                        bar.set_position(m.items);
                        bar.set_message(fit_owned(
                            format!(
                                "{}  {}  {}",
                                output::size(m.bytes),
                                output::rate(
                                    per_second(m.items, now.duration_since(m.started)),
                                    "items"
                                ),
                                m.folder
                            ),
                            MSG,
                        ));
                    }
                }
                self.periodic(&mut state);
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
                    let took = (self.now)().duration_since(m.started);
                    let text = format!(
                        "{} {}: {} items, {} in {}",
                        if complete { "✓" } else { "◐" },
                        sanitize(&mailbox),
                        m.items,
                        output::size(m.bytes),
                        output::duration(took)
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
            Event::TaskStarted { task, total, bytes } => {
                self.task_started(&mut state, task, total, bytes);
            }
            Event::TaskProgress { task, done, bytes } => {
                self.task_progress(&mut state, task, done, bytes);
            }
            Event::TaskDone { task } => {
                self.task_done(&mut state, task);
            }
            _ => {}
        }
        self.refresh_header(&state);
    }
}

/// A [`Progress`] shared with the core as its reporter.
pub fn shared(progress: Progress) -> (Arc<Progress>, Arc<dyn Reporter>) {
    let progress = Arc::new(progress);
    let reporter: Arc<dyn Reporter> = Arc::clone(&progress) as Arc<dyn Reporter>;
    (progress, reporter)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use atlas_core::ports::{Event, Reporter as _, Task};

    use super::{LINE_INTERVAL, Mode, Progress};

    /// A plain-line reporter writing into a buffer, with a clock moved by hand.
    type Lines = Arc<Mutex<Vec<String>>>;
    type Clock = Arc<Mutex<Instant>>;

    fn lines_reporter() -> (Progress, Lines, Clock) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let clock = Arc::new(Mutex::new(Instant::now()));
        let mut p = Progress::for_tasks(Mode::Lines, "atlas verify");
        let sink = Arc::clone(&lines);
        p.sink = Box::new(move |t| sink.lock().unwrap().push(t.to_owned()));
        let now = Arc::clone(&clock);
        p.now = Box::new(move || *now.lock().unwrap());
        p.started = *clock.lock().unwrap();
        p.lock().last_line = p.started;
        (p, lines, clock)
    }

    #[test]
    fn without_a_terminal_a_task_prints_its_start_a_line_every_interval_and_its_end() {
        let (p, lines, clock) = lines_reporter();
        p.report(Event::TaskStarted {
            task: Task::VerifyPacks,
            total: Some(40),
            bytes: Some(40 << 24),
        });
        for i in 0..40u64 {
            // A pack every second: 40 s in all, so three periodic lines (10, 20, 30 s).
            *clock.lock().unwrap() += Duration::from_secs(1);
            p.report(Event::TaskProgress {
                task: Task::VerifyPacks,
                done: 1,
                bytes: 1 << 24,
            });
            if i == 9 {
                let l = lines.lock().unwrap();
                assert_eq!(l.len(), 2, "{l:?}");
                assert_eq!(
                    l[1],
                    "verifying packs: 10/40 packs 160.0 MiB of 640.0 MiB, 16.0 MiB/s"
                );
            }
        }
        p.report(Event::TaskDone {
            task: Task::VerifyPacks,
        });
        let l = lines.lock().unwrap();
        assert_eq!(l[0], "verifying packs: 40 packs, 640.0 MiB");
        assert_eq!(l.len(), 1 + 4 + 1, "{l:?}");
        assert_eq!(l[5], "verifying packs: 40 packs, 640.0 MiB in 40.0 s");
        assert!(LINE_INTERVAL <= Duration::from_secs(10));
    }

    /// A terminal 80 columns wide that keeps everything drawn on it.
    #[derive(Debug, Default)]
    struct Term80 {
        drawn: Mutex<Vec<String>>,
    }

    #[derive(Debug)]
    struct Shared(Arc<Term80>);

    impl indicatif::TermLike for Shared {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.0.drawn.lock().unwrap().push(s.to_owned());
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.drawn.lock().unwrap().push(s.to_owned());
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Visible width: escape sequences (bold) take no column.
    fn visible_width(s: &str) -> usize {
        let mut width = 0;
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                width += 1;
            }
        }
        width
    }

    #[test]
    fn every_bar_fits_80_columns_even_with_long_names_and_big_numbers() {
        let term = Arc::new(Term80::default());
        let target = indicatif::ProgressDrawTarget::term_like_with_hz(
            Box::new(Shared(Arc::clone(&term))),
            200,
        );
        let p = Progress::build_on(Mode::Dashboard, "atlas restore", None, Some(3), target);
        let mailbox = "a.very.long.mailbox.address.of.someone@subsidiary.contoso.onmicrosoft.com";
        let pause = || std::thread::sleep(Duration::from_millis(3));
        p.report(Event::MailboxStarted {
            mailbox: mailbox.into(),
            folders: 3,
        });
        p.report(Event::FolderStarted {
            mailbox: mailbox.into(),
            folder: "Inbox/Projects/Alpha/2024/Q4 — Überblick/Subfolder with a long name".into(),
            expected: 123_456,
        });
        for _ in 0..5 {
            pause();
            p.report(Event::Items {
                mailbox: mailbox.into(),
                folder: "Inbox".into(),
                count: 12_345,
                bytes: 987_654_321_000,
            });
        }
        p.report(Event::TaskStarted {
            task: Task::VerifyPacks,
            total: Some(1_234_567),
            bytes: Some(20 << 40),
        });
        p.report(Event::TaskStarted {
            task: Task::Copy,
            total: None,
            bytes: None,
        });
        for _ in 0..5 {
            pause();
            p.report(Event::TaskProgress {
                task: Task::VerifyPacks,
                done: 99_999,
                bytes: 3 << 40,
            });
            p.report(Event::TaskProgress {
                task: Task::Copy,
                done: 12_345,
                bytes: 5 << 30,
            });
        }
        pause();
        p.finish();
        let drawn = term.drawn.lock().unwrap();
        assert!(
            drawn.iter().any(|l| l.contains("atlas restore")),
            "{drawn:?}"
        );
        assert!(
            drawn.iter().any(|l| l.contains("verifying packs")),
            "{drawn:?}"
        );
        assert!(drawn.iter().any(|l| l.contains("copying")), "{drawn:?}");
        for line in drawn.iter() {
            assert!(
                visible_width(line) <= 80,
                "{} columns: {line:?} {:?}",
                visible_width(line),
                line.chars().map(|c| c as u32).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn silent_prints_nothing_but_keeps_warnings() {
        let mut p = Progress::for_tasks(Mode::Silent, "atlas verify");
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&lines);
        p.sink = Box::new(move |t| sink.lock().unwrap().push(t.to_owned()));
        p.report(Event::TaskStarted {
            task: Task::Export,
            total: Some(3),
            bytes: None,
        });
        p.report(Event::Warning {
            mailbox: None,
            message: "careful".into(),
        });
        p.report(Event::TaskDone { task: Task::Export });
        assert!(lines.lock().unwrap().is_empty());
        assert_eq!(p.warnings(), ["careful"]);
    }

    #[test]
    fn a_mailbox_run_prints_its_totals_periodically() {
        let (p, lines, clock) = lines_reporter();
        p.report(Event::MailboxStarted {
            mailbox: "a@contoso.com".into(),
            folders: 2,
        });
        *clock.lock().unwrap() += Duration::from_secs(11);
        p.report(Event::Items {
            mailbox: "a@contoso.com".into(),
            folder: "Inbox".into(),
            count: 5,
            bytes: 5 * 1024,
        });
        let l = lines.lock().unwrap();
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(
            l[0].starts_with("atlas verify: 0/0 mailboxes done, 5 items, 5.0 KiB, "),
            "{l:?}"
        );
    }
}
