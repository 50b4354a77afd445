//! Is rolling the application back safe for the schema? Release N must keep working on a database that
//! release N+1 migrated. A migration is unsafe when it removes or reshapes what N may read or write:
//! dropping or renaming a table or column, changing a column's type, making a column required (a new
//! column without a default, `SET NOT NULL`, dropping a default), emptying a table. Those are found in the
//! SQL whatever the file says. A file may also declare `-- rollback-safe: no` (unsafe for its own reasons),
//! and `-- rollback-safe: yes` accepts the softer findings (new constraints N's writes might miss).

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub file: String,
    pub version: i64,
    pub safe: bool,
    /// Why it is unsafe (empty when safe).
    pub reasons: Vec<String>,
    /// What the file declares about itself, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared: Option<bool>,
}

/// `NNNN_name.sql` → NNNN.
pub fn version_of(file: &str) -> Option<i64> {
    let (digits, _) = file.strip_suffix(".sql")?.split_once('_')?;
    digits.parse().ok()
}

pub fn analyse(file: &str, sql: &str) -> Verdict {
    let declared = declaration(sql);
    let mut hard = Vec::new();
    let mut soft = Vec::new();
    for statement in statements(&tokens(sql)) {
        judge_statement(&statement, &mut hard, &mut soft);
    }
    let mut reasons = hard;
    if declared != Some(true) {
        reasons.extend(soft);
    }
    if declared == Some(false) {
        reasons.insert(0, "it declares itself `rollback-safe: no`".into());
    }
    Verdict {
        file: file.to_string(),
        version: version_of(file).unwrap_or(0),
        safe: reasons.is_empty(),
        reasons,
        declared,
    }
}

/// `-- rollback-safe: yes|no` on a comment line.
fn declaration(sql: &str) -> Option<bool> {
    sql.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("--")?.trim();
        let value = rest.strip_prefix("rollback-safe:")?.trim().to_ascii_lowercase();
        match value.split_whitespace().next()? {
            "yes" | "true" => Some(true),
            "no" | "false" => Some(false),
            _ => None,
        }
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A keyword or unquoted name, uppercased; quoted names keep their case (and are never keywords).
    Word(String, bool),
    Punct(char),
}

impl Tok {
    fn is(&self, keyword: &str) -> bool {
        matches!(self, Tok::Word(w, false) if w == keyword)
    }

    fn text(&self) -> String {
        match self {
            Tok::Word(w, true) => w.clone(),
            Tok::Word(w, false) => w.to_lowercase(),
            Tok::Punct(c) => c.to_string(),
        }
    }
}

/// Words and punctuation; comments, string literals and dollar-quoted bodies are skipped.
fn tokens(sql: &str) -> Vec<Tok> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '\'' {
            i = skip_until(&chars, i + 1, '\'');
            out.push(Tok::Word("'literal'".into(), true));
        } else if c == '"' {
            let end = skip_until(&chars, i + 1, '"');
            let name: String = chars[i + 1..end.saturating_sub(1).max(i + 1)].iter().collect();
            out.push(Tok::Word(name, true));
            i = end;
        } else if c == '$' {
            i = skip_dollar(&chars, i);
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect::<String>().to_uppercase(), false));
        } else {
            if !c.is_whitespace() {
                out.push(Tok::Punct(c));
            }
            i += 1;
        }
    }
    out
}

/// The index after the closing quote; a doubled quote is an escaped one.
fn skip_until(chars: &[char], mut i: usize, quote: char) -> usize {
    while i < chars.len() {
        if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

fn skip_dollar(chars: &[char], open: usize) -> usize {
    let mut end = open + 1;
    while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
        end += 1;
    }
    if chars.get(end) != Some(&'$') {
        return open + 1;
    }
    let tag: Vec<char> = chars[open..=end].to_vec();
    let mut i = end + 1;
    while i + tag.len() <= chars.len() {
        if chars[i..i + tag.len()] == tag[..] {
            return i + tag.len();
        }
        i += 1;
    }
    chars.len()
}

fn statements(tokens: &[Tok]) -> Vec<Vec<Tok>> {
    tokens.split(|t| *t == Tok::Punct(';')).filter(|s| !s.is_empty()).map(<[Tok]>::to_vec).collect()
}

/// Splits at top-level commas (not those inside parentheses).
fn top_level_items(tokens: &[Tok]) -> Vec<&[Tok]> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => depth -= 1,
            Tok::Punct(',') if depth == 0 => {
                items.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&tokens[start..]);
    items
}

/// Skips optional keywords (`COLUMN`, `IF EXISTS`, ...) at the front.
fn skip<'a>(mut tokens: &'a [Tok], optional: &[&str]) -> &'a [Tok] {
    while let Some(first) = tokens.first() {
        if optional.iter().any(|k| first.is(k)) {
            tokens = &tokens[1..];
        } else {
            break;
        }
    }
    tokens
}

fn name(tokens: &[Tok]) -> String {
    tokens.first().map_or_else(|| "?".into(), Tok::text)
}

fn judge_statement(s: &[Tok], hard: &mut Vec<String>, soft: &mut Vec<String>) {
    let Some(first) = s.first() else { return };
    if first.is("DROP") {
        let object = s.get(1).map(Tok::text).unwrap_or_default();
        if ["table", "view", "schema", "type", "function", "materialized", "sequence"].contains(&object.as_str()) {
            let rest = skip(&s[2..], &["VIEW", "IF", "EXISTS"]);
            hard.push(format!("it drops {object} {}, which release N may read", name(rest)));
        }
    } else if first.is("TRUNCATE") {
        hard.push(format!("it empties table {}", name(skip(&s[1..], &["TABLE", "ONLY"]))));
    } else if first.is("ALTER") && s.get(1).is_some_and(|t| t.is("TABLE")) {
        let rest = skip(&s[2..], &["IF", "EXISTS", "ONLY"]);
        let table = name(rest);
        let actions = rest.get(1..).unwrap_or_default();
        for action in top_level_items(actions) {
            judge_alter(&table, action, hard, soft);
        }
    }
}

fn judge_alter(table: &str, action: &[Tok], hard: &mut Vec<String>, soft: &mut Vec<String>) {
    let Some(verb) = action.first() else { return };
    if verb.is("DROP") {
        let rest = skip(&action[1..], &["COLUMN", "IF", "EXISTS"]);
        let is_constraint = action.get(1).is_some_and(|t| t.is("CONSTRAINT"));
        if !is_constraint {
            hard.push(format!("it drops column {table}.{}, which release N may read", name(rest)));
        }
    } else if verb.is("RENAME") {
        let what = action.iter().skip(1).map(Tok::text).collect::<Vec<_>>().join(" ");
        hard.push(format!("it renames in table {table} ({what}), which release N still calls by the old name"));
    } else if verb.is("SET") && action.get(1).is_some_and(|t| t.is("SCHEMA")) {
        hard.push(format!("it moves table {table} to another schema"));
    } else if verb.is("ALTER") {
        let rest = skip(&action[1..], &["COLUMN"]);
        let column = name(rest);
        let has = |k: &str| rest.iter().any(|t| t.is(k));
        if has("TYPE") {
            hard.push(format!("it changes the type of {table}.{column}"));
        } else if has("SET") && has("NOT") && has("NULL") {
            hard.push(format!("it makes {table}.{column} required (SET NOT NULL), which release N may not fill"));
        } else if has("DROP") && has("DEFAULT") {
            hard.push(format!("it drops the default of {table}.{column}, which release N's inserts may rely on"));
        }
    } else if verb.is("ADD") {
        let rest = skip(&action[1..], &["COLUMN", "IF", "NOT", "EXISTS"]);
        let constraint = ["CONSTRAINT", "UNIQUE", "CHECK", "FOREIGN", "PRIMARY", "EXCLUDE"];
        if rest.first().is_some_and(|t| constraint.iter().any(|k| t.is(k))) {
            soft.push(format!("it adds a constraint to {table} that release N's writes may not meet"));
        } else {
            let required = rest.windows(2).any(|w| w[0].is("NOT") && w[1].is("NULL"));
            let defaulted = rest.iter().any(|t| t.is("DEFAULT") || t.is("GENERATED"));
            if required && !defaulted {
                hard.push(format!(
                    "it adds the required column {table}.{} without a default, which release N's inserts do not fill",
                    name(rest)
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additive_changes_are_safe() {
        let sql = "-- adds labels\nALTER TABLE executions ADD COLUMN labels JSONB;\n\
                   ALTER TABLE executions ADD COLUMN source TEXT NOT NULL DEFAULT 'api';\n\
                   CREATE TABLE notes (id SERIAL PRIMARY KEY, body TEXT NOT NULL);\n\
                   CREATE INDEX ON executions (status); DROP INDEX IF EXISTS old_idx;\n\
                   ALTER TABLE executions DROP CONSTRAINT IF EXISTS c1;";
        let v = analyse("0002_labels.sql", sql);
        assert!(v.safe, "{:?}", v.reasons);
        assert_eq!(v.version, 2);
    }

    #[test]
    fn dropping_a_column_n_reads_is_refused_whatever_is_declared() {
        let sql = "-- rollback-safe: yes\nALTER TABLE agents DROP COLUMN role;";
        let v = analyse("0002_drop_role.sql", sql);
        assert!(!v.safe);
        assert_eq!(v.reasons, vec!["it drops column agents.role, which release N may read"]);
        let bare = analyse("0003_x.sql", "alter table \"agents\" drop \"role\", add column y int");
        assert_eq!(bare.reasons, vec!["it drops column agents.role, which release N may read"]);
    }

    #[test]
    fn renames_type_changes_required_columns_and_drops_are_refused() {
        let cases = [
            ("ALTER TABLE patterns RENAME COLUMN version TO release", "renames in table patterns"),
            ("ALTER TABLE patterns RENAME TO blueprints", "renames in table patterns"),
            (
                "ALTER TABLE executions ALTER COLUMN confidence TYPE NUMERIC",
                "changes the type of executions.confidence",
            ),
            ("ALTER TABLE executions ALTER status SET NOT NULL", "makes executions.status required"),
            ("ALTER TABLE executions ADD COLUMN owner TEXT NOT NULL", "required column executions.owner"),
            ("DROP TABLE IF EXISTS agents", "drops table agents"),
            ("TRUNCATE executions", "empties table executions"),
        ];
        for (sql, reason) in cases {
            let v = analyse("0002_x.sql", sql);
            assert!(!v.safe && v.reasons[0].contains(reason), "{sql}: {:?}", v.reasons);
        }
    }

    #[test]
    fn words_in_comments_strings_and_bodies_do_not_count() {
        let sql = "/* DROP TABLE agents; */ INSERT INTO notes VALUES ('DROP TABLE x;');\n\
                   CREATE FUNCTION f() RETURNS void AS $$ DROP TABLE agents; $$ LANGUAGE sql;";
        assert!(analyse("0002_x.sql", sql).safe);
    }

    #[test]
    fn declarations_decide_soft_findings_and_can_refuse() {
        let constraint = "ALTER TABLE executions ADD CONSTRAINT positive CHECK (duration_ms >= 0)";
        assert!(!analyse("0002_x.sql", constraint).safe);
        assert!(analyse("0002_x.sql", &format!("-- rollback-safe: yes\n{constraint}")).safe);
        let declared = analyse("0002_x.sql", "-- rollback-safe: no (changes meaning of status)\nSELECT 1");
        assert!(!declared.safe);
        assert!(declared.reasons[0].contains("rollback-safe: no"));
    }
}
