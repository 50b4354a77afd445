//! Versioned SQL migrations embedded in the binary: ordering, checksums, statement splitting and `migrate`.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

include!(concat!(env!("OUT_DIR"), "/embedded_migrations.rs"));

/// "control" in ASCII: a constant shared by every migrator, so two concurrent `migrate` runs serialise.
const ADVISORY_LOCK_KEY: i64 = 0x0063_6f6e_7472_6f6c;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    pub file: String,
    pub sql: String,
    pub checksum: String,
}

/// Directory of extra `NNNN_name.sql` files applied after the compiled-in ones: a release built from the
/// same binary (an image that bakes in later migrations) without a second compile.
pub const MIGRATIONS_DIR_VAR: &str = "MIGRATIONS_DIR";

/// The migrations this binary applies, in version order: the compiled-in ones plus `MIGRATIONS_DIR`'s.
pub fn embedded() -> Result<Vec<Migration>> {
    let dir = std::env::var(MIGRATIONS_DIR_VAR).ok().filter(|d| !d.trim().is_empty());
    let extra = match dir {
        Some(dir) => read_dir(std::path::Path::new(&dir))?,
        None => Vec::new(),
    };
    let mut files: Vec<(&str, &str)> = EMBEDDED.to_vec();
    files.extend(extra.iter().map(|(f, s)| (f.as_str(), s.as_str())));
    parse_all(&files)
}

/// Every `.sql` file of a directory, as (file name, contents).
fn read_dir(dir: &std::path::Path) -> Result<Vec<(String, String)>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {MIGRATIONS_DIR_VAR} {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "sql") {
            let sql = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            files.push((name, sql));
        }
    }
    Ok(files)
}

/// Highest migration version this binary knows; a database ahead of it was migrated by a newer release.
pub fn highest_embedded() -> i64 {
    embedded().ok().and_then(|all| all.last().map(|m| m.version)).unwrap_or(0)
}

pub fn parse_all(files: &[(&str, &str)]) -> Result<Vec<Migration>> {
    let mut all = files.iter().map(|(file, sql)| parse(file, sql)).collect::<Result<Vec<_>>>()?;
    all.sort_by_key(|m| m.version);
    for pair in all.windows(2) {
        if pair[0].version == pair[1].version {
            bail!("migrations {} and {} share version {}", pair[0].file, pair[1].file, pair[0].version);
        }
    }
    Ok(all)
}

/// Reads `NNNN_name.sql` into a migration; the version is the number before the first underscore.
pub fn parse(file: &str, sql: &str) -> Result<Migration> {
    let stem = file.strip_suffix(".sql").with_context(|| format!("migration file {file} must end in .sql"))?;
    let (digits, name) =
        stem.split_once('_').with_context(|| format!("migration file {file} must be named NNNN_name.sql"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        bail!("migration file {file} must be named NNNN_name.sql");
    }
    let version = digits.parse().with_context(|| format!("migration file {file}: version too large"))?;
    Ok(Migration {
        version,
        name: name.to_string(),
        file: file.to_string(),
        sql: sql.to_string(),
        checksum: checksum(sql),
    })
}

/// Hex sha256 of a migration file's bytes, recorded so an edited applied migration is caught.
pub fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits a script into statements at top-level `;`, respecting quotes, comments and dollar quoting,
/// so a failure can name the statement that failed.
pub fn split_statements(sql: &str) -> Vec<String> {
    let bytes = sql.as_bytes();
    let mut statements = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => i = skip_quoted(bytes, i),
            b'-' if bytes.get(i + 1) == Some(&b'-') => i = find_from(bytes, i, b"\n").unwrap_or(bytes.len()),
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = find_from(bytes, i + 2, b"*/").map_or(bytes.len(), |end| end + 2)
            }
            b'$' => i = skip_dollar_quoted(bytes, i),
            b';' => {
                push_statement(&mut statements, &sql[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push_statement(&mut statements, &sql[start..]);
    statements
}

fn push_statement(statements: &mut Vec<String>, text: &str) {
    let has_code = text.lines().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with("--")
    });
    if has_code {
        statements.push(text.trim().to_string());
    }
}

fn skip_quoted(bytes: &[u8], open: usize) -> usize {
    let quote = bytes[open];
    let mut i = open + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            // A doubled quote is an escaped quote inside the literal.
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn skip_dollar_quoted(bytes: &[u8], open: usize) -> usize {
    let tag_end =
        bytes[open + 1..].iter().position(|b| !(b.is_ascii_alphanumeric() || *b == b'_')).map(|n| open + 1 + n);
    match tag_end {
        Some(end) if bytes[end] == b'$' => {
            let tag = &bytes[open..=end];
            find_from(bytes, end + 1, tag).map_or(bytes.len(), |close| close + tag.len())
        }
        // `$1` parameters and the like are not quotes.
        _ => open + 1,
    }
}

fn find_from(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|n| from + n)
}

/// A migration recorded in `schema_migrations`.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: i64,
    pub name: String,
    pub checksum: String,
}

/// Applied migrations whose embedded file changed since; each is named in the returned messages.
pub fn checksum_mismatches(embedded: &[Migration], applied: &[Applied]) -> Vec<String> {
    applied
        .iter()
        .filter_map(|row| {
            let file = embedded.iter().find(|m| m.version == row.version)?;
            (file.checksum != row.checksum).then(|| {
                format!(
                    "migration {} was already applied with checksum {} but the file now has checksum {}; \
                     never edit an applied migration, add a new one",
                    file.file, row.checksum, file.checksum
                )
            })
        })
        .collect()
}

/// Migrations not yet applied, in order.
pub fn pending<'a>(embedded: &'a [Migration], applied: &[Applied]) -> Vec<&'a Migration> {
    embedded.iter().filter(|m| !applied.iter().any(|a| a.version == m.version)).collect()
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// Reads `schema_migrations`; an absent table means nothing was applied yet.
pub async fn applied(client: &Client) -> Result<Vec<Applied>> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .context("checking for schema_migrations")?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query("SELECT version, name, checksum FROM schema_migrations ORDER BY version", &[])
        .await
        .context("reading schema_migrations")?;
    Ok(rows.iter().map(|r| Applied { version: r.get(0), name: r.get(1), checksum: r.get(2) }).collect())
}

/// Applies every pending migration, each in its own transaction, under an advisory lock.
/// Returns the files applied (empty on a second run).
pub async fn migrate(client: &mut Client) -> Result<Vec<String>> {
    let embedded = embedded()?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&ADVISORY_LOCK_KEY])
        .await
        .context("taking the migration advisory lock")?;
    let outcome = migrate_locked(client, &embedded).await;
    // Closing the session releases the lock anyway; unlocking keeps a reused connection clean.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&ADVISORY_LOCK_KEY]).await;
    outcome
}

async fn migrate_locked(client: &mut Client, embedded: &[Migration]) -> Result<Vec<String>> {
    client.batch_execute(CREATE_TABLE).await.context("creating schema_migrations")?;
    let applied = applied(client).await?;
    let mismatches = checksum_mismatches(embedded, &applied);
    if !mismatches.is_empty() {
        bail!("{}", mismatches.join("\n"));
    }
    let highest = embedded.last().map_or(0, |m| m.version);
    for ahead in applied.iter().filter(|a| a.version > highest) {
        tracing::warn!(version = ahead.version, name = %ahead.name, "database has a migration this binary does not know");
    }
    let mut done = Vec::new();
    for migration in pending(embedded, &applied) {
        apply_one(client, migration).await?;
        tracing::info!(file = %migration.file, "migration applied");
        done.push(migration.file.clone());
    }
    Ok(done)
}

async fn apply_one(client: &mut Client, migration: &Migration) -> Result<()> {
    let tx = client.transaction().await.with_context(|| format!("starting transaction for {}", migration.file))?;
    for statement in split_statements(&migration.sql) {
        if let Err(err) = tx.batch_execute(&statement).await {
            let reason = err.as_db_error().map_or_else(|| err.to_string(), |db| db.message().to_string());
            bail!("migration {} failed: {reason}\nstatement: {statement}", migration.file);
        }
    }
    tx.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        &[&migration.version, &migration.name, &migration.checksum],
    )
    .await
    .with_context(|| format!("recording {}", migration.file))?;
    tx.commit().await.with_context(|| format!("committing {}", migration.file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_version_not_by_input_order() {
        let all = parse_all(&[("0010_b.sql", "b"), ("0002_a.sql", "a")]).unwrap();
        assert_eq!(all.iter().map(|m| m.version).collect::<Vec<_>>(), vec![2, 10]);
        assert_eq!(all[0].name, "a");
    }

    #[test]
    fn rejects_duplicate_versions_and_bad_names() {
        assert!(parse_all(&[("0001_a.sql", ""), ("1_b.sql", "")]).unwrap_err().to_string().contains("share version 1"));
        assert!(parse("init.sql", "").is_err());
        assert!(parse("00x1_init.sql", "").is_err());
        assert!(parse("0001_init.txt", "").is_err());
        assert!(parse("0001_.sql", "").is_err());
    }

    #[test]
    fn reads_extra_migrations_from_a_directory() {
        let dir = std::env::temp_dir().join(format!("cp-migrations-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0900_extra.sql"), "SELECT 1;").unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let files = read_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(files, vec![("0900_extra.sql".to_string(), "SELECT 1;".to_string())]);
    }

    #[test]
    fn checksum_is_sha256_hex() {
        assert_eq!(checksum(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn embedded_migrations_parse_and_start_at_one() {
        let all = embedded().unwrap();
        assert_eq!(all[0].file, "0001_init.sql");
        assert!(highest_embedded() >= 1);
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let sql = "-- header; not a statement\nCREATE TABLE a (x TEXT DEFAULT 'a;b');\n\
                   INSERT INTO \"we;ird\" VALUES ('it''s;');\n\
                   CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n\
                   /* block; comment */ SELECT $1;\n-- trailing comment\n";
        let statements = split_statements(sql);
        assert_eq!(statements.len(), 4, "{statements:#?}");
        assert!(statements[0].ends_with("DEFAULT 'a;b')"));
        assert!(statements[1].contains("'it''s;'"));
        assert!(statements[2].contains("SELECT 1; $body$"));
        assert!(statements[3].ends_with("SELECT $1"));
    }

    #[test]
    fn detects_edited_applied_migration_by_file_name() {
        let embedded = parse_all(&[("0001_init.sql", "changed")]).unwrap();
        let applied = vec![Applied { version: 1, name: "init".into(), checksum: checksum("original") }];
        let errors = checksum_mismatches(&embedded, &applied);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("0001_init.sql"));
        assert!(pending(&embedded, &applied).is_empty());
    }

    #[test]
    fn pending_skips_applied_versions() {
        let embedded = parse_all(&[("0001_a.sql", "a"), ("0002_b.sql", "b")]).unwrap();
        let applied = vec![Applied { version: 1, name: "a".into(), checksum: checksum("a") }];
        assert!(checksum_mismatches(&embedded, &applied).is_empty());
        assert_eq!(pending(&embedded, &applied).iter().map(|m| m.version).collect::<Vec<_>>(), vec![2]);
    }
}
