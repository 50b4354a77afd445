//! The build context as a tar archive, honouring `.dockerignore` the way the engine does.

use std::path::{Path, PathBuf};

use globset::GlobMatcher;

/// `.dockerignore` rules: the last matching pattern decides; a pattern matching a parent directory
/// matches everything below it; `!pattern` re-includes.
pub struct DockerIgnore {
    rules: Vec<(GlobMatcher, bool, String)>,
}

impl DockerIgnore {
    pub fn parse(text: &str) -> anyhow::Result<DockerIgnore> {
        let mut rules = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (negated, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
            let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| anyhow::anyhow!(".dockerignore pattern `{line}`: {e}"))?;
            rules.push((glob.compile_matcher(), negated, pattern.to_string()));
        }
        Ok(DockerIgnore { rules })
    }

    pub fn excludes(&self, relative: &Path) -> bool {
        let mut excluded = false;
        for (matcher, negated, _) in &self.rules {
            if relative.ancestors().filter(|p| !p.as_os_str().is_empty()).any(|p| matcher.is_match(p)) {
                excluded = !negated;
            }
        }
        excluded
    }

    /// An excluded directory must still be walked when a `!pattern` may re-include something inside it.
    fn may_reinclude_below(&self, dir: &Path) -> bool {
        let prefix = format!("{}/", dir.display());
        self.rules
            .iter()
            .any(|(_, negated, pattern)| *negated && (pattern.starts_with(&prefix) || pattern.contains("**")))
    }
}

/// The files of `context` that the engine would see, relative to it, sorted.
pub fn files(context: &Path, ignore: &DockerIgnore, dockerfile: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(context.join(&dir))
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", context.join(&dir).display()))?;
        for entry in entries {
            let entry = entry?;
            let relative = dir.join(entry.file_name());
            let kind = entry.file_type()?;
            let excluded = ignore.excludes(&relative) && relative != dockerfile;
            if kind.is_dir() {
                // The Dockerfile always goes in, even from an excluded directory.
                if !excluded || ignore.may_reinclude_below(&relative) || dockerfile.starts_with(&relative) {
                    dirs.push(relative);
                }
            } else if !excluded {
                out.push(relative);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A tar archive of those files (symlinks kept as links).
pub fn archive(context: &Path, files: &[PathBuf]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    // The engine's tar reader refuses GNU sparse entries (type `S`), which linkers' output can be.
    builder.sparse(false);
    for file in files {
        builder
            .append_path_with_name(context.join(file), file)
            .map_err(|e| anyhow::anyhow!("cannot add {} to the build context: {e}", file.display()))?;
    }
    Ok(builder.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_match_wins_and_parents_match() {
        let ignore = DockerIgnore::parse("*\n!target/release/app\n# comment\n").unwrap();
        assert!(ignore.excludes(Path::new("src/main.rs")));
        assert!(ignore.excludes(Path::new("target/debug/app")));
        assert!(!ignore.excludes(Path::new("target/release/app")));
    }

    #[test]
    fn directory_patterns_exclude_their_contents() {
        let ignore = DockerIgnore::parse("target\n**/*.log\n").unwrap();
        assert!(ignore.excludes(Path::new("target/x/y")));
        assert!(ignore.excludes(Path::new("a/b/c.log")));
        assert!(!ignore.excludes(Path::new("src/lib.rs")));
    }

    #[test]
    fn walks_only_what_is_included() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["docker/Dockerfile", "keep/a.txt", "skip/b.txt", "skip/keep-me.txt"] {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, f).unwrap();
        }
        let ignore = DockerIgnore::parse("skip\ndocker\n!skip/keep-me.txt\n").unwrap();
        let found = files(dir.path(), &ignore, Path::new("docker/Dockerfile")).unwrap();
        let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(names, ["docker/Dockerfile", "keep/a.txt", "skip/keep-me.txt"]);
        assert!(!archive(dir.path(), &found).unwrap().is_empty());
    }
}
