//! The `atlas` binary; everything lives in the `atlas_cli` library.

fn main() -> std::process::ExitCode {
    atlas_cli::main()
}
