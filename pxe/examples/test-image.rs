//! Makes a signed test image for benchmarks and manual tests (test
//! support, not product): fresh keys, `DIR/trust.json`, and
//! `DIR/out/NAME/VERSION/` holding the given files under a signed manifest.
//!
//! ```text
//! test-image DIR NAME VERSION CMDLINE FILE...
//! ```

#![allow(clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use ironrack_pxe::testkit::SigningWorld;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        eprintln!("usage: test-image DIR NAME VERSION CMDLINE FILE...");
        return ExitCode::from(2);
    }
    let dir = PathBuf::from(&args[0]);
    let Ok(version) = args[2].parse::<u64>() else {
        eprintln!("test-image: version {:?} is not a number", args[2]);
        return ExitCode::from(2);
    };
    let files: Vec<PathBuf> = args[4..].iter().map(PathBuf::from).collect();
    let named: Vec<(String, PathBuf)> = files
        .iter()
        .map(|f| {
            (
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                f.clone(),
            )
        })
        .collect();
    let artifacts: Vec<(&str, &std::path::Path)> = named
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_path()))
        .collect();
    let made = SigningWorld::new(&dir)
        .and_then(|w| w.image(&dir.join("out"), &args[1], version, &args[3], &artifacts));
    match made {
        Ok(image) => {
            eprintln!("test-image: {}", image.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("test-image: {e}");
            ExitCode::FAILURE
        }
    }
}
