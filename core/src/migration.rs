//! Helpers for adapters whose migrations are SQL files with a `{prefix}` placeholder (a table
//! prefix cannot be templated by `sqlx::migrate!`).

/// Renders a migration file for `prefix` and splits it into statements: comment lines dropped,
/// split on `;`. Migration files must not put `;` inside string literals or comments.
pub fn migration_statements(sql: &str, prefix: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .replace("{prefix}", prefix)
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_splits() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE {prefix}jobs (id int);\n\n\
                   CREATE INDEX {prefix}i ON {prefix}jobs (id);\n";
        assert_eq!(
            migration_statements(sql, "p_"),
            vec![
                "CREATE TABLE p_jobs (id int)".to_string(),
                "CREATE INDEX p_i ON p_jobs (id)".to_string(),
            ]
        );
    }
}
