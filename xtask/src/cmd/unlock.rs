//! `cargo xtask unlock`: clears an environment lock left by a run that died; refuses while a run holds it.

use std::process::ExitCode;

use super::{EXIT_INVALID, EXIT_LOCKED, EXIT_PASSED, PipelineArgs, locate};
use crate::run::lock::{self, LockError, Unlocked};

pub fn run(args: &PipelineArgs) -> ExitCode {
    let (_, base_dir) = match locate(args) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let env = args.env.as_deref().unwrap_or(crate::config::DEFAULT_ENV);
    match lock::unlock(&lock::lock_path(&base_dir, env), env) {
        Ok(Unlocked::WasFree) => {
            println!("environment `{env}` was not locked");
            ExitCode::from(EXIT_PASSED)
        }
        Ok(Unlocked::Cleared(holder)) => {
            println!("environment `{env}` unlocked; the lock was left by {holder}");
            ExitCode::from(EXIT_PASSED)
        }
        Err(e @ LockError::Held { .. }) => {
            eprintln!("error: {e}; refusing to unlock while that run is alive");
            ExitCode::from(EXIT_LOCKED)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}
