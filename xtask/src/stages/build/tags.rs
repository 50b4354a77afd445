//! Which tags an image gets: the git short sha (with `-dirty` for uncommitted trees), a version, `latest`.

use std::path::Path;

use crate::config::TagPolicy;
use crate::git::GitInfo;

/// The tag every run uses for its images: also the built-in variable `IMAGE_TAG`.
pub fn sha_tag(git: &GitInfo) -> String {
    let sha = git.short_sha.clone().unwrap_or_else(|| "nogit".into());
    if git.dirty { format!("{sha}-dirty") } else { sha }
}

pub fn tags(policies: &[TagPolicy], git: &GitInfo, version_from: Option<&Path>) -> anyhow::Result<Vec<String>> {
    let mut tags = Vec::new();
    for policy in policies {
        let tag = match policy {
            TagPolicy::Sha => sha_tag(git),
            TagPolicy::Version => version(git, version_from)?,
            TagPolicy::Latest => "latest".into(),
        };
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

fn version(git: &GitInfo, version_from: Option<&Path>) -> anyhow::Result<String> {
    let base = match version_from {
        Some(path) => cargo_version(path)?,
        None => git.describe.clone().ok_or_else(|| anyhow::anyhow!("no `version_from` and no git describe"))?,
    };
    let tag: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '-' }).collect();
    Ok(if git.dirty && !tag.ends_with("-dirty") { format!("{tag}-dirty") } else { tag })
}

fn cargo_version(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let manifest: toml::Table = text.parse().map_err(|e| anyhow::anyhow!("{} is not TOML: {e}", path.display()))?;
    manifest
        .get("package")
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(String::from)
        .ok_or_else(|| anyhow::anyhow!("{} has no package.version", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dirty: bool) -> GitInfo {
        GitInfo {
            short_sha: Some("abc12345".into()),
            describe: Some("v1.2.0-3-gabc1234".into()),
            dirty,
            ..Default::default()
        }
    }

    #[test]
    fn sha_tags_mark_dirty_trees() {
        assert_eq!(tags(&[TagPolicy::Sha], &git(false), None).unwrap(), ["abc12345"]);
        assert_eq!(tags(&[TagPolicy::Sha, TagPolicy::Latest], &git(true), None).unwrap(), ["abc12345-dirty", "latest"]);
    }

    #[test]
    fn version_comes_from_cargo_toml_or_describe() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "[package]\nname = \"x\"\nversion = \"0.3.1\"\n").unwrap();
        assert_eq!(tags(&[TagPolicy::Version], &git(false), Some(&manifest)).unwrap(), ["0.3.1"]);
        assert_eq!(tags(&[TagPolicy::Version], &git(false), None).unwrap(), ["v1.2.0-3-gabc1234"]);
    }
}
