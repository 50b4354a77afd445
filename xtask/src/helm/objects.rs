//! Parses `helm template` output into typed Kubernetes objects, reporting type errors and unknown fields.

use std::fmt;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One document of a rendering, with the template it came from.
#[derive(Debug, Clone)]
pub struct RenderedObject {
    /// The `# Source:` line of the document, e.g. `control-plane/templates/deployment.yaml`.
    pub source: Option<String>,
    pub kind: String,
    pub api_version: String,
    pub name: String,
    pub namespace: Option<String>,
    pub typed: Typed,
    /// The document as parsed, kept for server-side apply of any kind.
    pub value: Value,
}

impl RenderedObject {
    /// `Kind/name`, the way violations name an object.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// The kinds the policies look into; any other kind is kept untyped.
#[derive(Debug, Clone)]
#[allow(dead_code, reason = "parsing into these types is the validation; policies read `value`")]
pub enum Typed {
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
    DaemonSet(Box<DaemonSet>),
    Job(Box<Job>),
    CronJob(Box<CronJob>),
    Pod(Box<Pod>),
    Service(Box<Service>),
    ConfigMap(Box<ConfigMap>),
    Secret(Box<Secret>),
    ServiceAccount(Box<ServiceAccount>),
    HorizontalPodAutoscaler(Box<HorizontalPodAutoscaler>),
    PodDisruptionBudget(Box<PodDisruptionBudget>),
    /// A kind without a typed model here: checked for shape only.
    Other,
}

/// Why a rendered document is not a valid object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseProblem {
    pub source: Option<String>,
    /// `Kind/name` when the document got that far.
    pub object: Option<String>,
    /// Field path such as `spec.template.spec.containers[0].image`; `.` for the whole document.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ParseProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(source) = &self.source {
            write!(f, "{source}: ")?;
        }
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A YAML document cut out of a multi-document rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub source: Option<String>,
    pub text: String,
}

/// Cuts a rendering at its `---` lines, remembering each document's `# Source:` comment.
pub fn split_documents(yaml: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut current = Document { source: None, text: String::new() };
    for line in yaml.lines() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            docs.push(std::mem::replace(&mut current, Document { source: None, text: String::new() }));
            continue;
        }
        if current.source.is_none()
            && let Some(source) = trimmed.strip_prefix("# Source: ")
        {
            current.source = Some(source.trim().to_string());
        }
        current.text.push_str(line);
        current.text.push('\n');
    }
    docs.push(current);
    docs.retain(|doc| doc.text.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')));
    docs
}

/// Parses every document of a rendering; all problems of all documents are returned together.
pub fn parse_rendered(yaml: &str) -> Result<Vec<RenderedObject>, Vec<ParseProblem>> {
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for doc in split_documents(yaml) {
        match parse_document(&doc) {
            Ok(object) => objects.push(object),
            Err(mut found) => problems.append(&mut found),
        }
    }
    if problems.is_empty() { Ok(objects) } else { Err(problems) }
}

fn parse_document(doc: &Document) -> Result<RenderedObject, Vec<ParseProblem>> {
    let problem = |object: Option<String>, field: &str, message: String| ParseProblem {
        source: doc.source.clone(),
        object,
        field: field.to_string(),
        message,
    };
    let value: Value =
        serde_yaml::from_str(&doc.text).map_err(|err| vec![problem(None, ".", format!("not valid YAML: {err}"))])?;
    let Value::Object(map) = &value else {
        return Err(vec![problem(None, ".", "document is not a mapping".into())]);
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
    let metadata = map.get("metadata");
    let name = metadata.and_then(|m| m.get("name")).and_then(Value::as_str).map(str::to_string);
    let namespace = metadata.and_then(|m| m.get("namespace")).and_then(Value::as_str).map(str::to_string);
    let (Some(kind), Some(api_version), Some(name)) = (text("kind"), text("apiVersion"), name) else {
        let mut missing = Vec::new();
        for (field, present) in [
            ("apiVersion", text("apiVersion").is_some()),
            ("kind", text("kind").is_some()),
            ("metadata.name", metadata.and_then(|m| m.get("name")).and_then(Value::as_str).is_some()),
        ] {
            if !present {
                missing.push(problem(None, field, "missing or not a string".into()));
            }
        }
        return Err(missing);
    };
    let id = format!("{kind}/{name}");
    let typed = typed_object(&kind, &value).map_err(|found| {
        found.into_iter().map(|(field, message)| problem(Some(id.clone()), &field, message)).collect::<Vec<_>>()
    })?;
    Ok(RenderedObject { source: doc.source.clone(), kind, api_version, name, namespace, typed, value })
}

fn typed_object(kind: &str, value: &Value) -> Result<Typed, Vec<(String, String)>> {
    Ok(match kind {
        "Deployment" => Typed::Deployment(strict(value)?),
        "StatefulSet" => Typed::StatefulSet(strict(value)?),
        "DaemonSet" => Typed::DaemonSet(strict(value)?),
        "Job" => Typed::Job(strict(value)?),
        "CronJob" => Typed::CronJob(strict(value)?),
        "Pod" => Typed::Pod(strict(value)?),
        "Service" => Typed::Service(strict(value)?),
        "ConfigMap" => Typed::ConfigMap(strict(value)?),
        "Secret" => Typed::Secret(strict(value)?),
        "ServiceAccount" => Typed::ServiceAccount(strict(value)?),
        "HorizontalPodAutoscaler" => Typed::HorizontalPodAutoscaler(strict(value)?),
        "PodDisruptionBudget" => Typed::PodDisruptionBudget(strict(value)?),
        _ => Typed::Other,
    })
}

/// Deserialises like the API server would, except that unknown fields are errors:
/// serde skips them silently, and a misspelt field is a setting that never takes effect.
fn strict<K: DeserializeOwned>(value: &Value) -> Result<Box<K>, Vec<(String, String)>> {
    let mut unknown = Vec::new();
    let parsed = {
        let mut note = |path: serde_ignored::Path| unknown.push(ignored_path(&path));
        let de = serde_ignored::Deserializer::new(value, &mut note);
        serde_path_to_error::deserialize::<_, K>(de)
    };
    match parsed {
        Err(err) => Err(vec![(err.path().to_string(), err.inner().to_string())]),
        Ok(_) if !unknown.is_empty() => {
            Err(unknown.into_iter().map(|field| (field, "unknown field".to_string())).collect())
        }
        Ok(object) => Ok(Box::new(object)),
    }
}

/// Writes serde_ignored's path as `a.b[0].c`, the notation of kubectl and serde_path_to_error.
fn ignored_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() { key.clone() } else { format!("{parent}.{key}") }
        }
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = include_str!("../../tests/fixtures/helm/good.yaml");

    #[test]
    fn good_rendering_parses_every_document_with_its_source() {
        let objects = parse_rendered(GOOD).expect("good rendering parses");
        let ids: Vec<_> = objects.iter().map(RenderedObject::id).collect();
        assert!(ids.contains(&"Deployment/control-plane".to_string()), "{ids:?}");
        assert!(ids.contains(&"HorizontalPodAutoscaler/control-plane".to_string()), "{ids:?}");
        assert!(ids.contains(&"PodDisruptionBudget/control-plane".to_string()), "{ids:?}");
        let deployment = objects.iter().find(|o| o.kind == "Deployment").unwrap();
        assert_eq!(deployment.source.as_deref(), Some("control-plane/templates/deployment.yaml"));
        assert!(matches!(deployment.typed, Typed::Deployment(_)));
    }

    #[test]
    fn unknown_field_is_reported_with_object_field_and_source() {
        let problems = parse_rendered(include_str!("../../tests/fixtures/helm/unknown-field.yaml")).unwrap_err();
        assert_eq!(
            problems,
            vec![ParseProblem {
                source: Some("control-plane/templates/service.yaml".into()),
                object: Some("Service/control-plane".into()),
                field: "spec.ports[0].targetPorts".into(),
                message: "unknown field".into(),
            }]
        );
    }

    #[test]
    fn wrong_type_is_reported_with_object_and_field() {
        let problems = parse_rendered(include_str!("../../tests/fixtures/helm/wrong-type.yaml")).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].object.as_deref(), Some("Deployment/control-plane"));
        assert_eq!(problems[0].field, "spec.template.spec.containers[0].ports[0].containerPort");
        assert_eq!(problems[0].message, "invalid type: string \"eight-thousand\", expected i32");
        assert_eq!(problems[0].source.as_deref(), Some("control-plane/templates/deployment.yaml"));
    }

    #[test]
    fn document_without_kind_or_name_is_a_problem() {
        let problems = parse_rendered("---\n# Source: c/templates/x.yaml\napiVersion: v1\nmetadata: {}\n").unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["kind", "metadata.name"]);
        assert!(problems.iter().all(|p| p.source.as_deref() == Some("c/templates/x.yaml")));
    }

    #[test]
    fn invalid_yaml_is_a_problem_not_a_panic() {
        let problems = parse_rendered("---\n# Source: c/templates/x.yaml\nkind: [\n").unwrap_err();
        assert_eq!(problems[0].field, ".");
        assert!(problems[0].message.starts_with("not valid YAML"), "{}", problems[0].message);
    }

    #[test]
    fn split_keeps_sources_and_drops_empty_documents() {
        let yaml = "---\n# Source: c/templates/empty.yaml\n---\n# Source: c/templates/a.yaml\nkind: A\n--- # trailing\nkind: B\n";
        let docs = split_documents(yaml);
        assert_eq!(
            docs,
            [
                Document {
                    source: Some("c/templates/a.yaml".into()),
                    text: "# Source: c/templates/a.yaml\nkind: A\n".into()
                },
                Document { source: None, text: "kind: B\n".into() },
            ]
        );
    }

    #[test]
    fn unmodelled_kinds_are_kept_untyped() {
        let objects =
            parse_rendered("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n").unwrap();
        assert!(matches!(objects[0].typed, Typed::Other));
        assert_eq!(objects[0].id(), "Ingress/web");
        assert_eq!(objects[0].source, None);
    }
}
