//! Helpers both suites share: a random queue name, and the line a case prints when it skips.

/// A random queue name such as `q3kq9z0ab`, so that cases sharing a backend never meet.
pub(crate) fn queue_name() -> String {
    format!("q{}", &crate::random_prefix()[1..9])
}

/// Says that `case` is skipped and why (a capability the adapter does not declare).
pub(crate) fn skip(case: &str, why: &str) {
    eprintln!("SKIPPED {case}: {why}");
}

/// For the completeness checks: turns an area's case list into `const $name: &[&str]`.
#[cfg(test)]
#[doc(hidden)]
#[macro_export]
macro_rules! case_names {
    (const $name:ident; $($case:ident $(($pair:ident))?),* $(,)?) => {
        const $name: &[&str] = &[$(stringify!($case)),*];
    };
}

/// The names of the `pub async fn`s in a file's source: the cases it defines.
#[cfg(test)]
pub(crate) fn cases_in(source: &str) -> Vec<&str> {
    source
        .lines()
        .filter_map(|l| l.strip_prefix("pub async fn "))
        .map(|rest| rest.split(['(', '<']).next().unwrap_or(rest))
        .collect()
}

/// Checks that every area file in `dir` (all but `mod.rs` and `support.rs`) is among `areas`,
/// and that each area's list names exactly the `pub async fn`s of its file, each once.
#[cfg(test)]
pub(crate) fn check_lists(dir: &str, areas: &[(&str, &str, &[&str])]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<String> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".rs") && f != "mod.rs" && f != "support.rs")
        .collect();
    files.sort();
    let mut known: Vec<String> = areas.iter().map(|(f, _, _)| f.to_string()).collect();
    known.sort();
    assert_eq!(
        files, known,
        "an area file in {dir} is not wired into its suite"
    );
    for (file, source, listed) in areas {
        let mut defined = cases_in(source);
        defined.sort();
        let mut listed = listed.to_vec();
        listed.sort();
        assert_eq!(
            defined, listed,
            "{dir}/{file}: the case list at the end of the file must name every `pub async fn` \
             of the file, once"
        );
    }
}
