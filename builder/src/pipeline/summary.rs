//! The table printed at the end of a build: what was built, how big, and
//! where the time went.

use super::BuildReport;

/// The summary table printed at the end of a build.
pub fn summary_table(report: &BuildReport) -> String {
    let mut rows: Vec<(String, String)> = vec![
        (
            "image".into(),
            format!("{} version {}", report.name, report.version),
        ),
        ("output".into(), report.output.display().to_string()),
        ("packages".into(), report.packages.len().to_string()),
        (
            "installed size".into(),
            human_bytes(report.installed_size_kib * 1024),
        ),
    ];
    for artifact in &report.artifacts {
        rows.push((artifact.file.clone(), human_bytes(artifact.size)));
    }
    rows.push(("tree sha256".into(), report.tree_sha256.clone()));
    let status = if report.up_to_date {
        "up to date (already published)"
    } else if report.from_cache {
        "published from the stage cache"
    } else {
        "built"
    };
    rows.push(("status".into(), status.into()));
    rows.push(("time per stage".into(), String::new()));
    for stage in &report.stages {
        let time = if stage.cached {
            "cached".to_owned()
        } else {
            format!("{:.2} s", stage.seconds)
        };
        rows.push((format!("  {}", stage.stage), time));
    }
    rows.push(("total".into(), format!("{:.2} s", report.total_seconds)));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
