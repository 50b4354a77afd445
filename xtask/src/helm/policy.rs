//! Pure production-readiness policies over typed rendered objects: resources, probes, image tags, non-root.

use std::fmt;

use k8s_openapi::api::core::v1::{Container, PodSpec, Probe};

use super::objects::{RenderedObject, Typed};

/// What the policies compare the rendering with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInput {
    /// The tag the build stage produced; every app container must run it.
    pub expected_image_tag: Option<String>,
    pub liveness_path: String,
    pub readiness_path: String,
    /// Environment variables every app container must get, from `env` or from a rendered
    /// ConfigMap/Secret named in `envFrom`; empty skips the check.
    pub required_env: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `Kind/name`, e.g. `Deployment/control-plane`.
    pub object: String,
    /// e.g. `spec.template.spec.containers[0].resources.limits.memory`.
    pub field: String,
    pub message: String,
    /// The template the object was rendered from.
    pub source: Option<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.object, self.field, self.message)?;
        if let Some(source) = &self.source {
            write!(f, " (from {source})")?;
        }
        Ok(())
    }
}

/// Every violation of every object, in rendering order.
pub fn check_policies(objs: &[RenderedObject], input: &PolicyInput) -> Vec<Violation> {
    let mut found = Vec::new();
    for obj in objs {
        let Some((prefix, pod)) = pod_spec(obj) else {
            continue;
        };
        let mut report = |field: String, message: String| {
            found.push(Violation { object: obj.id(), field, message, source: obj.source.clone() })
        };
        let init = pod
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| (format!("{prefix}.initContainers[{i}]"), c, false));
        let app = pod.containers.iter().enumerate().map(|(i, c)| (format!("{prefix}.containers[{i}]"), c, true));
        for (path, container, is_app) in init.chain(app) {
            check_resources(&path, container, &mut report);
            check_non_root(&path, pod, container, &mut report);
            if is_app {
                check_probe(
                    &format!("{path}.livenessProbe"),
                    "liveness",
                    container.liveness_probe.as_ref(),
                    &input.liveness_path,
                    &mut report,
                );
                check_probe(
                    &format!("{path}.readinessProbe"),
                    "readiness",
                    container.readiness_probe.as_ref(),
                    &input.readiness_path,
                    &mut report,
                );
                check_image(&path, container, input.expected_image_tag.as_deref(), &mut report);
                check_env(&path, container, objs, &input.required_env, &mut report);
            } else {
                check_image(&path, container, None, &mut report);
            }
        }
    }
    found
}

/// The pod template of workload kinds, with the field path that leads to it.
fn pod_spec(obj: &RenderedObject) -> Option<(&'static str, &PodSpec)> {
    match &obj.typed {
        Typed::Deployment(d) => Some(("spec.template.spec", d.spec.as_ref()?.template.spec.as_ref()?)),
        Typed::StatefulSet(s) => Some(("spec.template.spec", s.spec.as_ref()?.template.spec.as_ref()?)),
        Typed::DaemonSet(d) => Some(("spec.template.spec", d.spec.as_ref()?.template.spec.as_ref()?)),
        Typed::Job(j) => Some(("spec.template.spec", j.spec.as_ref()?.template.spec.as_ref()?)),
        Typed::CronJob(c) => Some((
            "spec.jobTemplate.spec.template.spec",
            c.spec.as_ref()?.job_template.spec.as_ref()?.template.spec.as_ref()?,
        )),
        Typed::Pod(p) => Some(("spec", p.spec.as_ref()?)),
        _ => None,
    }
}

fn check_resources(path: &str, container: &Container, report: &mut impl FnMut(String, String)) {
    let resources = container.resources.as_ref();
    for (kind, list) in [
        ("requests", resources.and_then(|r| r.requests.as_ref())),
        ("limits", resources.and_then(|r| r.limits.as_ref())),
    ] {
        for resource in ["cpu", "memory"] {
            if list.is_none_or(|l| !l.contains_key(resource)) {
                let noun = if kind == "requests" { "request" } else { "limit" };
                report(
                    format!("{path}.resources.{kind}.{resource}"),
                    format!("container {:?} has no {resource} {noun}", container.name),
                );
            }
        }
    }
}

fn check_probe(path: &str, what: &str, probe: Option<&Probe>, expected: &str, report: &mut impl FnMut(String, String)) {
    let Some(probe) = probe else {
        return report(path.to_string(), format!("no {what} probe (expected an HTTP GET on {expected})"));
    };
    let Some(get) = probe.http_get.as_ref() else {
        return report(format!("{path}.httpGet"), format!("the {what} probe is not an HTTP GET on {expected}"));
    };
    let actual = get.path.as_deref().unwrap_or("/");
    if actual != expected {
        report(
            format!("{path}.httpGet.path"),
            format!("the {what} probe checks {actual}, but the service's {what} endpoint is {expected}"),
        );
    }
}

fn check_image(path: &str, container: &Container, expected_tag: Option<&str>, report: &mut impl FnMut(String, String)) {
    let field = format!("{path}.image");
    let Some(image) = container.image.as_deref().filter(|i| !i.is_empty()) else {
        return report(field, format!("container {:?} names no image", container.name));
    };
    let reference = parse_image(image);
    match reference.tag {
        Some("latest") => report(field, format!("image {image} uses the mutable tag latest")),
        None if reference.digest.is_none() => {
            report(field, format!("image {image} has no tag, so it resolves to latest"))
        }
        tag => {
            if let Some(expected) = expected_tag
                && tag != Some(expected)
            {
                report(field, format!("image {image} is not the tag the build produced ({expected})"))
            }
        }
    }
}

fn check_env(
    path: &str,
    container: &Container,
    objs: &[RenderedObject],
    required: &[String],
    report: &mut impl FnMut(String, String),
) {
    if required.is_empty() {
        return;
    }
    let mut provided: Vec<String> = container.env.iter().flatten().map(|e| e.name.clone()).collect();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or("");
        let config_map = source.config_map_ref.as_ref().map(|r| r.name.as_str());
        let secret = source.secret_ref.as_ref().map(|r| r.name.as_str());
        for obj in objs {
            let keys: Vec<&String> = match &obj.typed {
                Typed::ConfigMap(cm) if Some(obj.name.as_str()) == config_map => {
                    cm.data.iter().flatten().map(|(k, _)| k).collect()
                }
                Typed::Secret(s) if Some(obj.name.as_str()) == secret => s
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, _)| k)
                    .chain(s.string_data.iter().flatten().map(|(k, _)| k))
                    .collect(),
                _ => continue,
            };
            provided.extend(keys.into_iter().map(|k| format!("{prefix}{k}")));
        }
    }
    let missing: Vec<&str> = required.iter().map(String::as_str).filter(|r| !provided.iter().any(|p| p == r)).collect();
    if !missing.is_empty() {
        report(
            format!("{path}.env"),
            format!(
                "container {:?} does not get {} (neither env nor a rendered ConfigMap/Secret in envFrom)",
                container.name,
                missing.join(", ")
            ),
        );
    }
}

fn check_non_root(path: &str, pod: &PodSpec, container: &Container, report: &mut impl FnMut(String, String)) {
    let own = container.security_context.as_ref().and_then(|s| s.run_as_non_root);
    let from_pod = pod.security_context.as_ref().and_then(|s| s.run_as_non_root);
    if own.or(from_pod) != Some(true) {
        let why = match own {
            Some(false) => "sets runAsNonRoot: false",
            _ => "may run as root: neither it nor the pod sets runAsNonRoot: true",
        };
        report(format!("{path}.securityContext.runAsNonRoot"), format!("container {:?} {why}", container.name));
    }
}

/// An image reference split the way container runtimes read it.
#[derive(Debug, PartialEq, Eq)]
pub struct ImageRef<'a> {
    pub repository: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

/// Splits `host:port/name:tag@sha256:…`; a colon before the last `/` belongs to the registry host.
pub fn parse_image(image: &str) -> ImageRef<'_> {
    let (named, digest) = match image.split_once('@') {
        Some((named, digest)) => (named, Some(digest)),
        None => (image, None),
    };
    let last_slash = named.rfind('/').map_or(0, |i| i + 1);
    match named[last_slash..].rfind(':') {
        Some(colon) => {
            let colon = last_slash + colon;
            ImageRef { repository: &named[..colon], tag: Some(&named[colon + 1..]), digest }
        }
        None => ImageRef { repository: named, tag: None, digest },
    }
}

#[cfg(test)]
mod tests {
    use super::super::objects::parse_rendered;
    use super::*;

    fn input() -> PolicyInput {
        PolicyInput {
            expected_image_tag: Some("1.2.3".into()),
            liveness_path: "/health/live".into(),
            readiness_path: "/health/ready".into(),
            required_env: SERVICE_ENV.iter().map(|s| s.to_string()).collect(),
        }
    }

    const SERVICE_ENV: [&str; 9] = [
        "DATABASE_URL",
        "REDIS_URL",
        "ETCD_ENDPOINTS",
        "SERVICE_NAME",
        "APP_VERSION",
        "LOG_LEVEL",
        "RATE_LIMIT_PER_SEC",
        "CORS_ALLOWED_ORIGINS",
        "API_TOKEN",
    ];

    fn check(yaml: &str) -> Vec<Violation> {
        check_policies(&parse_rendered(yaml).expect("fixture parses"), &input())
    }

    const CONTAINER: &str = "spec.template.spec.containers[0]";

    #[test]
    fn good_rendering_passes() {
        assert_eq!(check(include_str!("../../tests/fixtures/helm/good.yaml")), vec![]);
    }

    #[test]
    fn missing_limits_name_object_and_field() {
        let found = check(include_str!("../../tests/fixtures/helm/missing-limits.yaml"));
        let fields: Vec<_> = found.iter().map(|v| v.field.clone()).collect();
        assert_eq!(
            fields,
            [format!("{CONTAINER}.resources.limits.cpu"), format!("{CONTAINER}.resources.limits.memory")]
        );
        assert!(found.iter().all(|v| v.object == "Deployment/control-plane"));
        assert_eq!(found[0].source.as_deref(), Some("control-plane/templates/deployment.yaml"));
    }

    #[test]
    fn probe_on_wrong_path_fails() {
        let found = check(include_str!("../../tests/fixtures/helm/wrong-probe-path.yaml"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].object, "Deployment/control-plane");
        assert_eq!(found[0].field, format!("{CONTAINER}.livenessProbe.httpGet.path"));
        assert!(found[0].message.contains("/healthz"), "{}", found[0].message);
    }

    #[test]
    fn latest_and_untagged_images_fail() {
        for fixture in [
            include_str!("../../tests/fixtures/helm/latest-tag.yaml"),
            include_str!("../../tests/fixtures/helm/untagged.yaml"),
        ] {
            let found = check(fixture);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].object, "Deployment/control-plane");
            assert_eq!(found[0].field, format!("{CONTAINER}.image"));
        }
    }

    #[test]
    fn image_tag_must_match_the_build() {
        let objs = parse_rendered(include_str!("../../tests/fixtures/helm/good.yaml")).unwrap();
        let found = check_policies(&objs, &PolicyInput { expected_image_tag: Some("2.0.0".into()), ..input() });
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, format!("{CONTAINER}.image"));
        assert!(found[0].message.contains("2.0.0"));
    }

    #[test]
    fn env_from_configmap_and_secret_refs_count_and_missing_ones_are_named() {
        let objs = parse_rendered(include_str!("../../tests/fixtures/helm/good.yaml")).unwrap();
        let mut wanted = input();
        wanted.required_env.push("FEATURE_FLAGS".into());
        let found = check_policies(&objs, &wanted);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, format!("{CONTAINER}.env"));
        assert!(found[0].message.contains("does not get FEATURE_FLAGS"), "{}", found[0].message);
    }

    #[test]
    fn container_opting_out_of_non_root_fails() {
        let found = check(include_str!("../../tests/fixtures/helm/root-allowed.yaml"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, format!("{CONTAINER}.securityContext.runAsNonRoot"));
    }

    #[test]
    fn pod_level_non_root_covers_containers_that_do_not_say() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  securityContext: {runAsNonRoot: true}\n  initContainers:\n    - name: init\n      image: busybox:1.36\n      resources: {requests: {cpu: 10m, memory: 8Mi}, limits: {cpu: 10m, memory: 8Mi}}\n  containers: []\n";
        assert_eq!(check(yaml), vec![]);
        let root = yaml.replace("runAsNonRoot: true", "runAsNonRoot: false");
        let found = check(&root);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].object, "Pod/p");
        assert_eq!(found[0].field, "spec.initContainers[0].securityContext.runAsNonRoot");
    }

    #[test]
    fn init_containers_need_resources_and_non_root_too() {
        let yaml = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:\n  template:\n    spec:\n      securityContext: {runAsNonRoot: true}\n      initContainers:\n        - name: wait\n          image: busybox:1.36\n      containers: []\n";
        let found = check(yaml);
        let fields: Vec<_> = found.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.template.spec.initContainers[0].resources.requests.cpu",
                "spec.template.spec.initContainers[0].resources.requests.memory",
                "spec.template.spec.initContainers[0].resources.limits.cpu",
                "spec.template.spec.initContainers[0].resources.limits.memory",
            ]
        );
        assert!(found.iter().all(|v| v.object == "Job/migrate"));
    }

    #[test]
    fn image_references_split_like_a_runtime() {
        let r = parse_image("registry.local:5000/team/app:1.2@sha256:ab");
        assert_eq!(
            r,
            ImageRef { repository: "registry.local:5000/team/app", tag: Some("1.2"), digest: Some("sha256:ab") }
        );
        assert_eq!(parse_image("registry.local:5000/app").tag, None);
        assert_eq!(parse_image("app@sha256:ab").tag, None);
        assert_eq!(parse_image("app:latest").tag, Some("latest"));
    }
}
