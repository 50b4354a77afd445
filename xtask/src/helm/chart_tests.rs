//! Runs the helm stand-in on the real chart and on each broken fixture chart under helm/testdata/charts/.

use std::path::{Path, PathBuf};

use xshell::Shell;

use super::render::ChartArgs;
use super::{ChartFailure, PolicyInput, check_chart, render, standin};

const TAG: &str = "1.2.3";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the repo root").to_path_buf()
}

/// The stand-in's launcher; in CI a missing stand-in fails the test instead of skipping it.
fn helm() -> Option<PathBuf> {
    let sh = Shell::new().expect("shell");
    match standin::ensure(&sh, &repo_root()) {
        Ok(bin) => Some(bin.join("helm")),
        Err(err) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and the helm stand-in could not be installed: {err:#}")
        }
        Err(err) => {
            eprintln!("note: skipping, the helm stand-in is not available here: {err:#}");
            None
        }
    }
}

fn input() -> PolicyInput {
    PolicyInput {
        expected_image_tag: Some(TAG.into()),
        liveness_path: "/health/live".into(),
        readiness_path: "/health/ready".into(),
        required_env: [
            "DATABASE_URL",
            "REDIS_URL",
            "ETCD_ENDPOINTS",
            "SERVICE_NAME",
            "APP_VERSION",
            "LOG_LEVEL",
            "RATE_LIMIT_PER_SEC",
            "CORS_ALLOWED_ORIGINS",
            "API_TOKEN",
        ]
        .map(String::from)
        .to_vec(),
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The real chart with the case's overlay laid over it, in a temp dir removed on drop.
fn fixture_chart(case: &str, with_tag: bool) -> (tempfile::TempDir, ChartArgs) {
    let root = repo_root();
    let case_dir = root.join("helm/testdata/charts").join(case);
    assert!(case_dir.is_dir(), "no fixture chart {}", case_dir.display());
    let tmp = tempfile::Builder::new().prefix("xtask-helm-").tempdir().unwrap();
    let chart = tmp.path().join("control-plane");
    copy_tree(&root.join("helm/control-plane"), &chart);
    if case_dir.join("overlay").is_dir() {
        copy_tree(&case_dir.join("overlay"), &chart);
    }
    let values = case_dir.join("case-values.yaml");
    let args = ChartArgs {
        release: "control-plane".into(),
        chart,
        values_files: if values.exists() { vec![values] } else { vec![] },
        set: if with_tag { vec![format!("image.tag={TAG}")] } else { vec![] },
        namespace: None,
    };
    (tmp, args)
}

fn check(helm: &Path, args: &ChartArgs) -> Result<super::ChartChecked, ChartFailure> {
    check_chart(&Shell::new().unwrap(), helm, args, &input()).expect("helm runs")
}

#[test]
fn real_chart_passes_for_every_environment() {
    let Some(helm) = helm() else { return };
    let root = repo_root();
    for env in ["local", "staging", "production"] {
        let args = ChartArgs {
            release: "control-plane".into(),
            chart: root.join("helm/control-plane"),
            values_files: vec![root.join(format!("helm/control-plane/values-{env}.yaml"))],
            set: vec![format!("image.tag={TAG}")],
            namespace: Some(env.into()),
        };
        let checked = check(&helm, &args).unwrap_or_else(|failure| panic!("{env}: {failure}"));
        assert!(checked.lint.stdout.contains("1 chart(s) linted, 0 chart(s) failed"), "{}", checked.lint.stdout);
        assert!(checked.rendered.contains("# Source: control-plane/templates/deployment.yaml"));
        let kinds: Vec<_> = checked.objects.iter().map(|o| o.kind.as_str()).collect();
        assert!(kinds.contains(&"Deployment") && kinds.contains(&"ConfigMap"), "{env}: {kinds:?}");
        assert_eq!(kinds.contains(&"HorizontalPodAutoscaler"), env != "local", "{env}: {kinds:?}");
    }
}

#[test]
fn missing_limits_fail_the_policy() {
    let Some(helm) = helm() else { return };
    let (_tmp, args) = fixture_chart("missing-limits", true);
    let Err(ChartFailure::Policy(found)) = check(&helm, &args) else { panic!("expected a policy failure") };
    let fields: Vec<_> = found.iter().map(|v| format!("{} {}", v.object, v.field)).collect();
    assert_eq!(
        fields,
        [
            "Deployment/control-plane spec.template.spec.containers[0].resources.limits.cpu",
            "Deployment/control-plane spec.template.spec.containers[0].resources.limits.memory",
        ]
    );
}

#[test]
fn probe_on_wrong_path_fails_the_policy() {
    let Some(helm) = helm() else { return };
    let (_tmp, args) = fixture_chart("wrong-probe-path", true);
    let Err(ChartFailure::Policy(found)) = check(&helm, &args) else { panic!("expected a policy failure") };
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].field, "spec.template.spec.containers[0].livenessProbe.httpGet.path");
}

#[test]
fn latest_tag_is_refused_by_the_values_schema() {
    let Some(helm) = helm() else { return };
    let (_tmp, args) = fixture_chart("latest-tag", false);
    let Err(ChartFailure::Lint(out)) = check(&helm, &args) else { panic!("expected lint to fail") };
    assert!(out.stdout.contains("[ERROR] values.yaml: - at '/image/tag'"), "{}", out.stdout);
    assert_eq!(out.stderr.trim_end().lines().last(), Some("Error: 1 chart(s) linted, 1 chart(s) failed"));
    assert_eq!(out.exit_code, Some(1));
}

#[test]
fn template_error_fails_lint() {
    let Some(helm) = helm() else { return };
    let (_tmp, args) = fixture_chart("template-error", true);
    let Err(ChartFailure::Lint(out)) = check(&helm, &args) else { panic!("expected lint to fail") };
    assert!(out.stdout.starts_with("==> Linting "), "{}", out.stdout);
    assert!(out.stdout.contains("[ERROR] templates/"), "{}", out.stdout);
    assert!(out.stdout.contains("nosuchfunction"), "{}", out.stdout);
    let template = render::template(&Shell::new().unwrap(), &helm, &args, &Default::default()).unwrap();
    assert_eq!(template.exit_code, Some(1));
    assert!(template.stderr.starts_with("Error: "), "{}", template.stderr);
    assert!(template.stdout.is_empty());
}

#[test]
fn schema_violation_fails_lint() {
    let Some(helm) = helm() else { return };
    let (_tmp, args) = fixture_chart("schema-violation", true);
    let Err(ChartFailure::Lint(out)) = check(&helm, &args) else { panic!("expected lint to fail") };
    assert!(out.stdout.contains("- at '/replicaCount': got string, want integer"), "{}", out.stdout);
}

#[test]
fn unknown_field_fails_the_typed_parse() {
    let Some(helm) = helm() else { return };
    let (_tmp, args) = fixture_chart("unknown-field", true);
    let Err(ChartFailure::Parse(problems)) = check(&helm, &args) else { panic!("expected a parse failure") };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].object.as_deref(), Some("Service/control-plane"));
    assert_eq!(problems[0].field, "spec.ports[0].targetPorts");
    assert_eq!(problems[0].source.as_deref(), Some("control-plane/templates/service.yaml"));
}

#[test]
fn missing_required_value_fails_template_not_lint() {
    let Some(helm) = helm() else { return };
    let (_tmp, args) = fixture_chart("missing-required", false);
    // Helm lints in a mode where `required` only warns, as the real CLI does.
    let Err(ChartFailure::Template(out)) = check(&helm, &args) else { panic!("expected template to fail") };
    assert_eq!(out.exit_code, Some(1));
    assert!(out.stderr.contains("Error: execution error at (control-plane/templates/"), "{}", out.stderr);
    assert!(out.stderr.contains("image.tag is required"), "{}", out.stderr);
}

#[test]
fn version_names_the_helm_sdk() {
    let Some(helm) = helm() else { return };
    let sh = Shell::new().unwrap();
    let out = xshell::cmd!(sh, "{helm} version --short").quiet().read().unwrap();
    assert!(out.starts_with("v4."), "{out}");
}
