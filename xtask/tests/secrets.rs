//! No secret reaches any output: values of `${secret:NAME}` read from the environment, from NAME_FILE,
//! or generated, and variables marked `secret: true`, planted in a run that prints them, fails a gate
//! with them, and keeps them in its targets. Searched for in stdout, stderr and every file the run writes,
//! also in the escaped forms JSON, HTML and XML would give them.

mod common;

use common::{Workspace, stderr, stdout, walk};

const PIPELINE: &str = r#"
version: 1
variables:
  PLAIN: visible-value
  DB_URL: { value: "postgres://app:marked-var-s3cret@db/app", secret: true }
environments:
  ci:
    variables:
      OVERRIDE: { value: env-marked-s3cret, secret: true }
secrets:
  FROM_ENV: {}
  FROM_FILE: {}
  GENERATED: { generate: true }
stages:
  - name: prints-them
    kind: command
    program: sh
    args:
      - -c
      - 'printf %s "$2" > generated.txt; for s in "$@"; do echo "out $s"; echo "err $s" >&2; done; echo $0'
      - "${secret:FROM_ENV}"
      - "${secret:FROM_FILE}"
      - "${secret:GENERATED}"
      - "${DB_URL}"
      - "${OVERRIDE}"
      - "${PLAIN}"
    gates:
      - name: mentions them in expected and actual
        kind: output
        contains: ["missing ${secret:FROM_ENV} ${secret:FROM_FILE} ${DB_URL} ${OVERRIDE}"]
  - name: cleanup
    kind: command
    when: always
    program: sh
    args: [-c, 'echo "cleanup with $0"', "${secret:FROM_ENV}"]
"#;

const FROM_ENV: &str = "env-s3cret-value";
/// Quotes, markup and a slash: the escaped forms must be masked too.
const FROM_FILE: &str = "file\"s3cret<&>/value'";

#[test]
fn no_secret_reaches_the_terminal_or_any_file() {
    let ws = Workspace::new(PIPELINE);
    let secret_file = ws.path().join("secret.txt");
    std::fs::write(&secret_file, format!("{FROM_FILE}\n")).unwrap();
    let out = ws
        .xtask(&["deploy", "--env", "ci", "--verbose"])
        .env("FROM_ENV", FROM_ENV)
        .env("FROM_FILE_FILE", &secret_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the gate fails: {}{}", stdout(&out), stderr(&out));
    let generated = std::fs::read_to_string(ws.path().join("generated.txt")).unwrap();
    assert_eq!(generated.len(), 32, "a generated secret was passed: {generated:?}");
    let secrets = [FROM_ENV, FROM_FILE, &generated, "marked-var-s3cret", "env-marked-s3cret"];

    let terminal = format!("{}{}", stdout(&out), stderr(&out));
    assert!(terminal.contains("out ***") && terminal.contains("err ***"), "the lines were printed: {terminal}");
    assert!(terminal.contains("out visible-value"), "plain variables are not masked: {terminal}");
    assert_hidden(&secrets, "the terminal", &terminal);

    let files = walk(&ws.path().join("target"));
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    for expected in ["run.json", "report.md", "report.html", "junit.xml", "prints-them.log", "cleanup.log"] {
        assert!(names.iter().any(|n| n.ends_with(expected)), "{expected} was written: {names:?}");
    }
    for file in &files {
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        assert_hidden(&secrets, &file.display().to_string(), &text);
    }
    let record = std::fs::read_to_string(ws.latest().join("run.json")).unwrap();
    assert!(record.contains("***"), "the record shows where secrets were: {record}");

    // `plan` and `--json` print resolved values too.
    let plan =
        ws.xtask(&["plan", "--env", "ci"]).env("FROM_ENV", FROM_ENV).env("FROM_FILE_FILE", &secret_file).output();
    let plan = plan.unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));
    assert_hidden(&secrets, "plan", &format!("{}{}", stdout(&plan), stderr(&plan)));
    let json = ws
        .xtask(&["deploy", "--env", "ci", "--json"])
        .env("FROM_ENV", FROM_ENV)
        .env("FROM_FILE_FILE", &secret_file)
        .output()
        .unwrap();
    assert_hidden(&secrets[..2], "deploy --json", &format!("{}{}", stdout(&json), stderr(&json)));
}

/// `text` holds none of the secrets, raw or in the escaped forms of JSON, HTML and XML.
fn assert_hidden(secrets: &[&str], place: &str, text: &str) {
    for secret in secrets {
        for form in escaped_forms(secret) {
            assert!(!text.contains(&form), "{place} holds the secret {form:?}:\n{text}");
        }
    }
}

fn escaped_forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap();
    let html = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;");
    let xml = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;");
    let mut forms = vec![secret.to_string(), json[1..json.len() - 1].to_string(), html, xml];
    // Text escaped for HTML may also keep the apostrophe or slash as is.
    forms.push(secret.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;"));
    forms.push(secret.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"));
    forms.dedup();
    forms
}
