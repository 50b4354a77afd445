//! `output`: the command stage's output contains, or lacks, given text.

use super::{Check, CommandOutput};
use crate::config::{OutputGate, Stream};

pub fn check(gate: &OutputGate, output: Option<&CommandOutput>) -> Check {
    let empty = CommandOutput::default();
    let output = output.unwrap_or(&empty);
    let text = match gate.stream {
        Stream::Stdout => output.stdout.clone(),
        Stream::Stderr => output.stderr.clone(),
        Stream::Both => format!("{}{}", output.stdout, output.stderr),
    };
    let missing: Vec<&String> = gate.contains.iter().filter(|c| !text.contains(c.as_str())).collect();
    let present: Vec<&String> = gate.not_contains.iter().filter(|c| text.contains(c.as_str())).collect();
    let expected = crate::config::GateSpec::Output(gate.clone()).target();
    let actual = match (missing.is_empty(), present.is_empty()) {
        (true, true) => "all found as expected".to_string(),
        _ => {
            let mut parts: Vec<String> = missing.iter().map(|m| format!("missing {m:?}")).collect();
            parts.extend(present.iter().map(|p| format!("found {p:?}")));
            format!("{} (last line: {:?})", parts.join(", "), text.lines().last().unwrap_or(""))
        }
    };
    Check::new(missing.is_empty() && present.is_empty(), expected, actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out() -> CommandOutput {
        CommandOutput { exit_code: Some(0), stdout: "test result: ok\n".into(), stderr: "warning: x\n".into() }
    }

    #[test]
    fn contains_and_lacks() {
        let pass = OutputGate {
            stream: Stream::Stdout,
            contains: vec!["result: ok".into()],
            not_contains: vec!["warning".into()],
        };
        assert!(check(&pass, Some(&out())).passed);
        let fail = OutputGate { stream: Stream::Both, contains: vec![], not_contains: vec!["warning".into()] };
        let c = check(&fail, Some(&out()));
        assert!(!c.passed);
        assert!(c.actual.contains("found \"warning\""), "{}", c.actual);
    }
}
