//! A private apt (its own configuration, sources, state and cache; nothing
//! of the host's apt is read or written) reading one repository tree, and
//! the closure `apt-get -s install` computes with an empty dpkg status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{require_tool, stdout};

/// apt reading `deb [trusted=yes] file:ROOT SUITE COMPONENTS`.
pub struct Apt {
    dir: PathBuf,
}

/// What `apt-get -s install` printed, parsed.
#[derive(Debug)]
pub struct Simulation {
    /// Name → version of every package apt would newly install.
    pub installs: BTreeMap<String, String>,
    /// The broken count apt's problem resolver started with, if it ran.
    pub resolver_broken: Vec<usize>,
    /// Whether apt resolved the request (even if ordering then failed).
    pub ok: bool,
    /// stdout and stderr, for failure messages.
    pub output: String,
}

impl Apt {
    /// Sets up apt under `dir` and runs `apt-get update` (a local copy of
    /// the indexes: no network).
    pub fn new(dir: &Path, root: &Path, suite: &str, components: &[&str]) -> Self {
        require_tool("apt-get");
        for sub in [
            "conf.d",
            "sources.d",
            "prefs.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("status"), "").unwrap();
        std::fs::write(
            dir.join("sources.list"),
            format!(
                "deb [trusted=yes] file:{} {suite} {}\n",
                root.display(),
                components.join(" ")
            ),
        )
        .unwrap();
        let d = dir.display();
        // Dir::Etc::Parts is private too: the host's apt.conf.d (autoremove
        // patterns, docker cache settings) must not change the answer.
        let config = format!(
            "Dir::Etc::Parts \"{d}/conf.d\";\n\
             Dir::Etc::SourceList \"{d}/sources.list\";\n\
             Dir::Etc::SourceParts \"{d}/sources.d\";\n\
             Dir::Etc::Preferences \"{d}/preferences\";\n\
             Dir::Etc::PreferencesParts \"{d}/prefs.d\";\n\
             Dir::State \"{d}/state\";\n\
             Dir::State::status \"{d}/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             Dir::Cache::pkgcache \"{d}/cache/pkgcache.bin\";\n\
             Dir::Cache::srcpkgcache \"{d}/cache/srcpkgcache.bin\";\n\
             Debug::NoLocking \"true\";\n\
             APT::Architecture \"amd64\";\n\
             APT::Architectures {{ \"amd64\"; }};\n\
             APT::Sandbox::User \"root\";\n\
             Acquire::Languages \"none\";\n"
        );
        std::fs::write(dir.join("apt.conf"), config).unwrap();
        let apt = Self {
            dir: dir.to_owned(),
        };
        let update = stdout(apt.cmd("apt-get").args(["-q", "update"]));
        assert!(
            !update.contains("Err:") && !update.contains("W:"),
            "apt-get update:\n{update}"
        );
        apt
    }

    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", self.dir.join("apt.conf"))
            .env("LC_ALL", "C");
        c
    }

    /// apt preferences making these versions the candidates (what a
    /// request's `prefer` list does).
    pub fn set_preferences(&self, prefer: &[(String, String)]) {
        let text: Vec<String> = prefer
            .iter()
            .map(|(n, v)| format!("Package: {n}\nPin: version {v}\nPin-Priority: 1001\n"))
            .collect();
        std::fs::write(self.dir.join("preferences"), text.join("\n")).unwrap();
    }

    /// `apt-get -s install [--no-install-recommends] ARGS` on an empty status.
    pub fn simulate(&self, args: &[String], recommends: bool) -> Simulation {
        let mut cmd = self.cmd("apt-get");
        cmd.args(["-s", "-q", "-o", "Debug::pkgProblemResolver=1"]);
        cmd.args(["-o", "APT::Get::Show-Versions=1", "install"]);
        if !recommends {
            cmd.arg("--no-install-recommends");
        }
        let out = cmd.args(args).output().expect("running apt-get");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        // The resolution is the "NEW packages" list (with versions), printed
        // before apt orders the installation: a dependency cycle can still
        // make that ordering fail ("Could not configure"), which is not
        // the resolver's business.
        let mut installs = BTreeMap::new();
        let mut lines = text
            .lines()
            .skip_while(|l| !l.starts_with("The following NEW packages"));
        let resolved = lines.next().is_some();
        let block: Vec<&str> = lines.take_while(|l| l.starts_with("  ")).collect();
        let tokens: Vec<&str> = block.iter().flat_map(|l| l.split_whitespace()).collect();
        for pair in tokens.chunks(2) {
            if let [name, version] = pair {
                let version = version.trim_start_matches('(').trim_end_matches(')');
                installs.insert((*name).to_owned(), version.to_owned());
            }
        }
        let resolver_broken = err
            .lines()
            .chain(text.lines())
            .filter_map(|l| l.split("pkgProblemResolver with broken count: ").nth(1))
            .map(|n| n.trim().parse().unwrap())
            .collect();
        Simulation {
            installs,
            resolver_broken,
            ok: resolved || out.status.success(),
            output: format!("{text}\n{err}"),
        }
    }
}
