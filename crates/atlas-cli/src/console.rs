//! Diagnostics on stderr that can never panic or abort the work.
//!
//! `eprintln!` panics when stderr is gone: `atlas backup … 2>&1 | head -2` closes the pipe
//! after two lines, a closed SSH session takes the terminal with it. A panic there, in the
//! middle of a backup, would stop the run before it commits or releases its lease. Every
//! line Atlas prints on stderr goes through [`note!`] instead, which drops what cannot be
//! written: once nobody reads, the work still finishes and the exit code still tells the
//! outcome. (The crate denies `clippy::print_stderr` and `clippy::print_stdout`, so no
//! panicking print macro comes back.)

use std::fmt;
use std::io::{self, Write as _};

/// Write one line to stderr; a write error (closed pipe, hung-up terminal) is ignored.
pub fn line(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Write to stderr without a line end (a prompt); errors are ignored as in [`line`].
pub fn inline(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.flush());
}

/// `eprintln!` that never panics: see the module docs.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::console::line(format_args!($($arg)*))
    };
}
pub(crate) use note;

/// `eprint!` that never panics (prompts).
macro_rules! prompt {
    ($($arg:tt)*) => {
        $crate::console::inline(format_args!($($arg)*))
    };
}
pub(crate) use prompt;

/// A result written to stdout whose reader went away (`atlas list | head -1`) is not a
/// failure of the command: the reader chose to stop reading. Other write errors (a full
/// disk behind a redirect) still are.
pub fn reader_gone_is_ok(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
