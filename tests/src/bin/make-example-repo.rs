//! Regenerates `examples/repo` and `examples/keys`:
//! `cargo run -p securebuild-tests --bin make-example-repo -- examples`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("examples"));
    match securebuild_tests::example_repo::write_example(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("make-example-repo: {err}");
            ExitCode::FAILURE
        }
    }
}
