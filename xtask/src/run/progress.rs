//! Shows the run as it happens: spinners on a terminal, one timestamped line per event elsewhere.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::record::Status;
use crate::redact::redact;

pub enum Event<'a> {
    StageStarted {
        stage: &'a str,
        kind: &'a str,
    },
    StageFinished {
        stage: &'a str,
        status: Status,
        duration: Duration,
        reason: Option<&'a str>,
    },
    Gate {
        stage: &'a str,
        gate: &'a str,
        status: Status,
        expected: &'a str,
        actual: &'a str,
    },
    /// A line of a stage's output (build log, command output).
    Output {
        stage: &'a str,
        line: &'a str,
    },
    Note(&'a str),
}

pub struct Progress {
    mode: Mode,
    to_stderr: bool,
    verbose: bool,
}

enum Mode {
    Quiet,
    Plain,
    Terminal { bars: MultiProgress, running: Mutex<HashMap<String, ProgressBar>> },
}

impl Progress {
    /// `to_stderr` keeps stdout for `--json`. Bars only when that stream is a terminal.
    pub fn new(quiet: bool, to_stderr: bool, verbose: bool) -> Progress {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            console::set_colors_enabled(false);
            console::set_colors_enabled_stderr(false);
        }
        let terminal = if to_stderr { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() };
        let mode = if quiet {
            Mode::Quiet
        } else if terminal {
            Mode::Terminal { bars: MultiProgress::new(), running: Mutex::new(HashMap::new()) }
        } else {
            if !to_stderr {
                console::set_colors_enabled(false);
            }
            Mode::Plain
        };
        Progress { mode, to_stderr, verbose }
    }

    pub fn emit(&self, event: Event) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain => {
                if let Some(line) = self.line(&event) {
                    self.print(&format!("{} {line}", timestamp()));
                }
            }
            Mode::Terminal { bars, running } => self.draw(bars, running, &event),
        }
    }

    fn draw(&self, bars: &MultiProgress, running: &Mutex<HashMap<String, ProgressBar>>, event: &Event) {
        let mut running = running.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::StageStarted { stage, kind } => {
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} {elapsed}").expect("static template"),
                );
                bar.set_prefix(stage.to_string());
                bar.set_message(format!("({kind})"));
                bar.enable_steady_tick(Duration::from_millis(120));
                running.insert(stage.to_string(), bar);
            }
            Event::Output { stage, line } => {
                if let Some(bar) = running.get(*stage) {
                    bar.set_message(truncate(&redact(line), 80));
                }
            }
            Event::StageFinished { stage, .. } => {
                if let Some(bar) = running.remove(*stage) {
                    bar.finish_and_clear();
                    bars.remove(&bar);
                }
                if let Some(line) = self.line(event) {
                    let _ = bars.println(line);
                }
            }
            _ => {
                if let Some(line) = self.line(event) {
                    let _ = bars.println(line);
                }
            }
        }
    }

    fn line(&self, event: &Event) -> Option<String> {
        Some(match event {
            Event::StageStarted { stage, kind } => {
                format!("{} {} ({kind})", style("▶").cyan(), style(stage).bold())
            }
            Event::StageFinished { stage, status, duration, reason } => {
                let reason = reason.map(|r| format!(": {}", redact(r))).unwrap_or_default();
                format!(
                    "{} {} {} in {}{reason}",
                    mark(*status),
                    style(stage).bold(),
                    status.as_str(),
                    seconds(*duration)
                )
            }
            Event::Gate { stage, gate, status, expected, actual } => {
                let detail = if *status == Status::Failed {
                    format!("\n      expected: {}\n      actual:   {}", redact(expected), redact(actual))
                } else {
                    format!(" ({})", redact(actual))
                };
                format!("  {} {stage} / {gate}{detail}", mark(*status))
            }
            Event::Output { stage, line } if self.verbose => {
                format!("  {stage} │ {}", redact(line))
            }
            Event::Output { .. } => return None,
            Event::Note(text) => redact(text).into_owned(),
        })
    }

    fn print(&self, line: &str) {
        if self.to_stderr {
            let _ = writeln!(std::io::stderr(), "{line}");
        } else {
            let _ = writeln!(std::io::stdout(), "{line}");
        }
    }
}

fn mark(status: Status) -> String {
    match status {
        Status::Passed => style("✓").green().to_string(),
        Status::Failed => style("✗").red().to_string(),
        Status::Interrupted => style("⚠").yellow().to_string(),
        _ => style("·").dim().to_string(),
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn timestamp() -> String {
    jiff::Timestamp::now().strftime("%H:%M:%S").to_string()
}

fn truncate(line: &str, max: usize) -> String {
    line.chars().take(max).collect()
}
