//! The migration runner for adapters whose migrations are SQL files with a `{prefix}`
//! placeholder (a table prefix cannot be templated by `sqlx::migrate!`): render and split a
//! file ([`migration_statements`]), and apply the versions not applied yet, recording each in
//! `{prefix}migrations` ([`run_migrations`]). A backend supplies only its dialect: the SQL of
//! that table ([`MigrationTable`]) and two primitives to run SQL on the one transaction it
//! opened and commits ([`MigrationTarget`]).

use async_trait::async_trait;

use crate::admin::PendingMigration;
use crate::error::{Error, Result};

/// One migration file: its version (the order it is applied in) and its SQL, with `{prefix}`
/// where the table prefix goes.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in ascending order; recorded in `{prefix}migrations` once applied.
    pub version: i64,
    /// The file's text (`include_str!`), statements separated by `;`.
    pub sql: &'static str,
}

/// A backend's `{prefix}migrations` table, in its dialect, with `{prefix}` placeholders. The
/// table has a `version` column the runner reads with `SELECT version FROM {prefix}migrations`.
#[derive(Debug, Clone, Copy)]
pub struct MigrationTable {
    /// Creates the table if it is missing (`CREATE TABLE IF NOT EXISTS {prefix}migrations …`).
    /// The runner's first statement: a backend whose transactions take their write lock at the
    /// first write (SQLite) holds it from here on.
    pub create: &'static str,
    /// Records one applied version, bound as the statement's one parameter.
    pub record: &'static str,
}

/// A backend's side of [`run_migrations`]: one open transaction, already holding whatever lock
/// keeps two processes from migrating the same prefix at once.
#[async_trait]
pub trait MigrationTarget: Send {
    /// Runs one statement, with `version` bound as its one parameter when given. `what` names
    /// the step for the error of a failure.
    async fn execute(
        &mut self,
        what: &'static str,
        statement: &str,
        version: Option<i64>,
    ) -> Result<()>;
    /// Runs a query whose rows are one 64-bit integer, and returns them.
    async fn versions(&mut self, query: &str) -> Result<Vec<i64>>;
}

/// Applies, in order, every migration of `migrations` whose version is not recorded in
/// `table`, statement by statement, recording each version after its last statement. A
/// statement that fails is a [`Config`](crate::ErrorKind::Config) error naming `backend` and
/// the version, with the backend's error as its source; the caller's transaction then rolls
/// back, so a failed run applies nothing.
pub async fn run_migrations(
    target: &mut dyn MigrationTarget,
    table: &MigrationTable,
    migrations: &[Migration],
    prefix: &str,
    backend: &str,
) -> Result<()> {
    let render = |sql: &str| sql.replace("{prefix}", prefix);
    target
        .execute("create migrations table", &render(table.create), None)
        .await?;
    let applied = target
        .versions(&format!("SELECT version FROM {prefix}migrations"))
        .await?;
    for m in migrations {
        if applied.contains(&m.version) {
            continue;
        }
        for statement in migration_statements(m.sql, prefix) {
            target
                .execute("run migration", &statement, None)
                .await
                .map_err(|e| {
                    Error::config(format!("{backend} migration {} failed", m.version))
                        .with_source(e)
                })?;
        }
        target
            .execute("record migration", &render(table.record), Some(m.version))
            .await?;
    }
    Ok(())
}

/// The latest version of `migrations` (0 for none): the schema version
/// [`run_migrations`] brings an instance to.
pub fn latest_version(migrations: &[Migration]) -> i64 {
    migrations.iter().map(|m| m.version).max().unwrap_or(0)
}

/// What [`run_migrations`] would run on an instance whose `table` holds `applied` (and does
/// not exist at all when `table_exists` is false), for
/// [`Storage::pending_migrations`](crate::Storage::pending_migrations): every migration not
/// applied, in order, with its statements rendered for `prefix` followed by the statement that
/// records it (its parameter written in); the first also creates the migrations table when it
/// is missing.
pub fn pending_migrations(
    table: &MigrationTable,
    migrations: &[Migration],
    applied: &[i64],
    table_exists: bool,
    prefix: &str,
) -> Vec<PendingMigration> {
    let render = |sql: &str| sql.replace("{prefix}", prefix);
    let mut create = (!table_exists).then(|| render(table.create));
    migrations
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| {
            let mut steps: Vec<String> = create.take().into_iter().collect();
            steps.extend(migration_statements(m.sql, prefix));
            let v = m.version.to_string();
            let record = render(table.record);
            let record = if record.contains("$1") {
                record.replacen("$1", &v, 1)
            } else {
                record.replacen('?', &v, 1)
            };
            steps.push(record);
            PendingMigration {
                version: m.version,
                steps,
            }
        })
        .collect()
}

/// The instance prefixes among a database's table names, for
/// [`Storage::prefixes`](crate::Storage::prefixes): every `P` with both a `{P}migrations` and
/// a `{P}jobs` table and a valid prefix ([`check_prefix`](crate::adapter::check_prefix)),
/// sorted.
pub fn prefixes_of_tables(tables: &[String]) -> Vec<String> {
    let mut out: Vec<String> = tables
        .iter()
        .filter_map(|t| t.strip_suffix("migrations"))
        .filter(|p| crate::adapter::check_prefix(p).is_ok())
        .filter(|p| tables.iter().any(|t| *t == format!("{p}jobs")))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

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

    /// A target that keeps its table in memory and can fail one statement.
    #[derive(Default)]
    struct Memory {
        applied: Vec<i64>,
        executed: Vec<String>,
        fail_on: Option<&'static str>,
    }

    #[async_trait]
    impl MigrationTarget for Memory {
        async fn execute(
            &mut self,
            what: &'static str,
            statement: &str,
            version: Option<i64>,
        ) -> Result<()> {
            if self.fail_on.is_some_and(|f| statement.contains(f)) {
                return Err(Error::invalid(format!("{what}: syntax error")));
            }
            match version {
                Some(v) => self.applied.push(v),
                None => self.executed.push(statement.to_string()),
            }
            Ok(())
        }
        async fn versions(&mut self, query: &str) -> Result<Vec<i64>> {
            assert_eq!(query, "SELECT version FROM p_migrations");
            Ok(self.applied.clone())
        }
    }

    const TABLE: MigrationTable = MigrationTable {
        create: "CREATE TABLE {prefix}migrations",
        record: "RECORD {prefix}migrations",
    };

    const SET: &[Migration] = &[
        Migration {
            version: 1,
            sql: "CREATE TABLE {prefix}a (x int);",
        },
        Migration {
            version: 2,
            sql: "CREATE TABLE {prefix}b (x int); BROKEN {prefix}c;",
        },
    ];

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn lists_what_is_pending_without_running_it() {
        let all = pending_migrations(&TABLE, SET, &[], false, "p_");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].version, 1);
        assert_eq!(
            all[0].steps,
            vec![
                "CREATE TABLE p_migrations",
                "CREATE TABLE p_a (x int)",
                "RECORD p_migrations"
            ]
        );
        assert_eq!(all[1].steps.len(), 3, "{:?}", all[1].steps);
        let rest = pending_migrations(&TABLE, SET, &[1], true, "p_");
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].steps[0], "CREATE TABLE p_b (x int)");
        assert!(pending_migrations(&TABLE, SET, &[1, 2], true, "p_").is_empty());
        assert_eq!(latest_version(SET), 2);
        let pg = MigrationTable {
            create: "",
            record: "INSERT INTO {prefix}migrations (version) VALUES ($1)",
        };
        let p = pending_migrations(&pg, &SET[..1], &[], true, "p_");
        assert_eq!(
            p[0].steps.last().unwrap(),
            "INSERT INTO p_migrations (version) VALUES (1)"
        );
    }

    #[test]
    fn finds_prefixes_among_tables() {
        let t = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            prefixes_of_tables(&t(&[
                "b_jobs",
                "b_migrations",
                "a_migrations",
                "a_jobs",
                "schema_migrations",
                "orders",
                "migrations",
                "jobs",
            ])),
            vec!["a_", "b_"]
        );
    }

    #[test]
    fn applies_what_is_missing_in_order() {
        let mut m = Memory {
            applied: vec![1],
            fail_on: Some("never"),
            ..Memory::default()
        };
        block_on(run_migrations(&mut m, &TABLE, SET, "p_", "Test")).unwrap();
        assert_eq!(
            m.executed,
            vec![
                "CREATE TABLE p_migrations",
                "CREATE TABLE p_b (x int)",
                "BROKEN p_c"
            ]
        );
        assert_eq!(m.applied, vec![1, 2]);
    }

    #[test]
    fn a_failed_statement_names_the_migration() {
        let mut m = Memory {
            fail_on: Some("BROKEN"),
            ..Memory::default()
        };
        let e = block_on(run_migrations(&mut m, &TABLE, SET, "p_", "Test")).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert_eq!(e.message(), "Test migration 2 failed");
        assert_eq!(m.applied, vec![1], "version 2 is not recorded");
    }
}
