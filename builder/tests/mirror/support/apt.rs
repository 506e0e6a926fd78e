//! The real apt, with a private configuration (nothing of the host's apt
//! state is read or written), reading a mirror snapshot.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A private apt under `dir`, whose only source is `line`.
pub struct Apt {
    dir: PathBuf,
}

impl Apt {
    pub fn new(dir: &Path, source_line: &str) -> Apt {
        for sub in [
            "conf.d",
            "sources.d",
            "prefs.d",
            "state/lists/partial",
            "cache/archives/partial",
            "download",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("status"), "").unwrap();
        std::fs::write(dir.join("sources.list"), format!("{source_line}\n")).unwrap();
        let d = dir.display();
        let config = format!(
            "Dir::Etc::Parts \"{d}/conf.d\";\n\
             Dir::Etc::SourceList \"{d}/sources.list\";\n\
             Dir::Etc::SourceParts \"{d}/sources.d\";\n\
             Dir::Etc::Preferences \"{d}/preferences\";\n\
             Dir::Etc::PreferencesParts \"{d}/prefs.d\";\n\
             Dir::State \"{d}/state\";\n\
             Dir::State::status \"{d}/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             Debug::NoLocking \"true\";\n\
             APT::Architecture \"amd64\";\n\
             APT::Architectures {{ \"amd64\"; }};\n\
             APT::Sandbox::User \"root\";\n\
             Acquire::Languages \"none\";\n"
        );
        std::fs::write(dir.join("apt.conf"), config).unwrap();
        Apt {
            dir: dir.to_owned(),
        }
    }

    /// A command with this apt's configuration.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", self.dir.join("apt.conf"))
            .env("LC_ALL", "C");
        c
    }

    /// Runs and returns stdout, panicking with the output on failure.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self
            .cmd(program)
            .args(args)
            .current_dir(self.dir.join("download"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{text}",
            out.status
        );
        text
    }

    /// `apt-get update` (refusing any error or warning line) then
    /// `apt-get download PACKAGES`; returns the downloaded files.
    pub fn update_and_download(&self, packages: &[&str]) -> Vec<PathBuf> {
        let update = self.run("apt-get", &["update"]);
        assert!(
            !update.contains("Err:") && !update.contains("W:"),
            "apt-get update:\n{update}"
        );
        let mut args = vec!["download"];
        args.extend_from_slice(packages);
        self.run("apt-get", &args);
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("download"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }
}
