//! The figure the bench programs report from several runs.

/// The median of `runs` (the upper middle one for an even count). Panics on an empty list.
pub fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}
