//! `cargo xtask plan` on a generated 500-stage pipeline, timed against `xtask --version` (process start-up)
//! measured in the same run. Run with `cargo bench -p xtask --bench plan`.

use std::process::Command;
use std::time::{Duration, Instant};

const STAGES: usize = 500;
const ROUNDS: usize = 20;

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("pipeline.yaml"), generated_pipeline()).expect("pipeline written");
    let xtask = env!("CARGO_BIN_EXE_xtask");
    let baseline = median(ROUNDS, || run(Command::new(xtask).arg("--version")));
    let plan = median(ROUNDS, || run(Command::new(xtask).arg("plan").current_dir(dir.path())));
    let validate = median(ROUNDS, || run(Command::new(xtask).arg("validate").current_dir(dir.path())));
    println!("{STAGES}-stage pipeline, median of {ROUNDS} runs");
    println!("| command | median | vs start-up |");
    println!("|---|---|---|");
    println!("| xtask --version (start-up) | {:.1} ms | 1.00x |", ms(baseline));
    println!("| xtask plan | {:.1} ms | {:.2}x |", ms(plan), ms(plan) / ms(baseline));
    println!("| xtask validate | {:.1} ms | {:.2}x |", ms(validate), ms(validate) / ms(baseline));
}

fn generated_pipeline() -> String {
    let mut text = String::from("version: 1\nvariables:\n  PORT: \"8080\"\nstages:\n");
    for i in 0..STAGES {
        let needs = if i == 0 { String::new() } else { format!("    needs: [stage-{}]\n", i / 2) };
        text += &format!(
            "  - name: stage-{i}\n    kind: command\n    program: echo\n    args: [\"${{PORT}}\", \"{i}\"]\n{needs}    gates:\n      - {{ name: says, kind: output, contains: [\"{i}\"] }}\n"
        );
    }
    text
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("xtask runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
