//! Project tasks: `cargo xtask <task>`.
//!
//! - `fixtures [--only PART ...]`: creates `.venv` with the pinned reference stack
//!   (`tests/fixtures/requirements.txt`) if needed, then regenerates `tests/data/` with
//!   `tests/fixtures/generate.py`.
//! - `ci`: runs exactly what continuous integration runs (`.ci/run`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("fixtures") => fixtures(&args[1..]),
        Some("ci") => run(Command::new("bash").arg(root().join(".ci/run"))),
        _ => Err(
            "usage: cargo xtask fixtures [--only noise|schedulers|sd|face ...] | cargo xtask ci"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {status}"))
    }
}

fn fixtures(extra: &[String]) -> Result<(), String> {
    let root = root();
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    let requirements = root.join("tests/fixtures/requirements.txt");
    if !python.exists() {
        eprintln!("xtask: creating {}", venv.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    eprintln!("xtask: installing the pinned reference stack");
    run(Command::new(&python)
        .args(["-m", "pip", "install", "-q", "-r"])
        .arg(&requirements))?;
    // One thread keeps the references reproducible and avoids oversubscription next to builds.
    run(Command::new(&python)
        .arg(root.join("tests/fixtures/generate.py"))
        .args(extra)
        .env("OMP_NUM_THREADS", "1"))
}
