//! `exit_code`: the command stage's program exited with the expected code.

use super::{Check, CommandOutput};
use crate::config::ExitCodeGate;

pub fn check(gate: &ExitCodeGate, output: Option<&CommandOutput>) -> Check {
    let expected = format!("exit code {}", gate.equals);
    match output.and_then(|o| o.exit_code) {
        Some(code) => Check::new(code == gate.equals, expected, format!("exit code {code}")),
        None => Check::new(false, expected, "no exit code: the program was killed by a signal or never started"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: Option<i32>, equals: i32) -> bool {
        let out = CommandOutput { exit_code: code, ..Default::default() };
        check(&ExitCodeGate { equals }, Some(&out)).passed
    }

    #[test]
    fn compares_codes() {
        assert!(run(Some(0), 0));
        assert!(!run(Some(1), 0));
        assert!(run(Some(3), 3));
        assert!(!run(None, 0));
    }
}
