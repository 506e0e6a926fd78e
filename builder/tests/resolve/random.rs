//! Random repositories (deterministic seeds): a generator, and an
//! independent check that a closure is complete and conflict-free.

use std::collections::BTreeMap;

use ironrack_builder::source::relation::Dependency;
use ironrack_builder::source::{Catalog, PackageId};

use crate::repo::pkg;

/// xorshift64*: the same cases on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const PRIORITIES: [Option<&str>; 6] = [
    None,
    Some("required"),
    Some("important"),
    Some("standard"),
    Some("optional"),
    Some("extra"),
];
const VERSIONS: [&str; 3] = ["1.0", "2.0", "1:0.5"];

/// A random repository and requests. Providers of one virtual name have
/// distinct priorities, so apt's package-ID tie-break never decides.
pub fn repository(seed: u64) -> (Vec<String>, Vec<String>) {
    let mut rng = Rng::new(seed);
    let n = 6 + rng.below(14);
    let names: Vec<String> = (0..n).map(|i| format!("p{i:02}")).collect();
    let priority: Vec<usize> = (0..n).map(|_| rng.below(PRIORITIES.len())).collect();
    let virtuals = rng.below(4);
    let mut provides: Vec<Vec<String>> = vec![Vec::new(); n];
    for v in 0..virtuals {
        let mut used = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let p = rng.below(n);
            if !used.contains(&priority[p]) {
                used.push(priority[p]);
                let version = if rng.chance(40) { " (= 1.5)" } else { "" };
                provides[p].push(format!("v{v}{version}"));
            }
        }
    }
    let target = |rng: &mut Rng| -> String {
        let name = if virtuals > 0 && rng.chance(25) {
            format!("v{}", rng.below(virtuals))
        } else {
            names[rng.below(n)].clone()
        };
        match rng.below(9) {
            0 => format!("{name} (>= 2.0)"),
            1 => format!("{name} (<< 2.0)"),
            2 => format!("{name} (= 1.0)"),
            _ => name,
        }
    };
    let mut paragraphs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let count = 1 + rng.below(2);
        for version in VERSIONS.iter().take(count) {
            let mut fields: Vec<(&str, String)> = Vec::new();
            if let Some(p) = PRIORITIES[priority[i]] {
                fields.push(("Priority", p.to_owned()));
            }
            let mut groups = Vec::new();
            for _ in 0..rng.below(4) {
                let alts: Vec<String> = (0..1 + rng.below(3)).map(|_| target(&mut rng)).collect();
                groups.push(alts.join(" | "));
            }
            if !groups.is_empty() {
                fields.push(("Depends", groups.join(", ")));
            }
            if rng.chance(15) {
                fields.push(("Pre-Depends", target(&mut rng)));
            }
            if rng.chance(8) {
                fields.push(("Conflicts", names[rng.below(n)].clone()));
            }
            if rng.chance(5) {
                fields.push(("Breaks", format!("{} (<< 2.0)", names[rng.below(n)])));
            }
            if rng.chance(15) {
                fields.push(("Recommends", target(&mut rng)));
            }
            if !provides[i].is_empty() {
                fields.push(("Provides", provides[i].join(", ")));
            }
            let borrowed: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            paragraphs.push(pkg(name, version, &borrowed));
        }
    }
    let requests = (0..1 + rng.below(3))
        .map(|_| names[rng.below(n)].clone())
        .collect();
    (paragraphs, requests)
}

fn meets(c: &Catalog, dep: &Dependency, by: PackageId) -> bool {
    let p = c.package(by);
    if p.name == dep.name && dep.allows(&p.version) {
        return true;
    }
    p.provides.atoms().iter().any(|prv| {
        prv.name == dep.name
            && match (&dep.constraint, &prv.constraint) {
                (None, _) => true,
                (Some(want), Some(have)) => want.allows(&have.version),
                (Some(_), None) => false,
            }
    })
}

/// Independent of the resolver: every (Pre-)Depends group of every
/// package is met inside the closure, and no Conflicts or Breaks of one
/// matches another; one version per name.
pub fn check_closure(c: &Catalog, closure: &[PackageId]) -> Result<(), String> {
    let mut by_name = BTreeMap::new();
    for &id in closure {
        if by_name.insert(c.package(id).name, id).is_some() {
            return Err(format!(
                "two versions of {}",
                c.names().resolve(c.package(id).name)
            ));
        }
    }
    let label = |id: PackageId| {
        let p = c.package(id);
        format!("{} {}", c.names().resolve(p.name), p.version)
    };
    for &id in closure {
        let p = c.package(id);
        for group in p.pre_depends.groups().chain(p.depends.groups()) {
            if !group
                .iter()
                .any(|d| closure.iter().any(|&o| meets(c, d, o)))
            {
                return Err(format!("{}: unmet {:?}", label(id), group));
            }
        }
        for dep in p.conflicts.atoms().iter().chain(p.breaks.atoms()) {
            if let Some(&o) = closure
                .iter()
                .find(|&&o| c.package(o).name != p.name && meets(c, dep, o))
            {
                return Err(format!("{} conflicts with {}", label(id), label(o)));
            }
        }
    }
    Ok(())
}
