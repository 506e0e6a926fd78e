//! Relation fields against dpkg's own parser: `dpkg-deb --build` parses
//! the control file and refuses a malformed Depends/Provides/Breaks.
//!
//! Generated fields (seeded) go through one bash loop; dpkg must accept
//! exactly the ones we accept. `[arch]` and `<profile>` restrictions are
//! left out: dpkg rejects them in binary packages, we parse them on
//! purpose (source-package syntax).
//!
//! dpkg-deb parses strictly: a version dpkg only *warns* about (`a1`,
//! `1_0`) is an error there, while dpkg reading its status/available files
//! and apt reading indexes accept it. We accept it and report it through
//! `Version::lint`, so "strictly valid" here means: parsed, no lint.

use std::fmt::Write as _;
use std::process::Command;

use ironrack_builder::source::names::Interner;
use ironrack_builder::source::relation::parse_relations;

use crate::util::{Rng, require_tool, stdout};

const CASES: usize = 250;

/// Mostly valid pieces, each with a small chance of a bad one, so that
/// both outcomes are common.
fn atom(rng: &mut Rng) -> String {
    let bad = |rng: &mut Rng| rng.below(14) == 0;
    let name = if bad(rng) {
        rng.pick::<&str>(&["-bad", "a@b", "", "a/b"])
    } else {
        rng.pick::<&str>(&["libc6", "a", "x-y+z.w", "A", "a_b", "0ad", "pkg"])
    };
    let qual = if bad(rng) {
        rng.pick::<&str>(&[":-x", ":", ":a_b"])
    } else {
        rng.pick::<&str>(&["", "", "", "", ":any", ":native", ":amd64", ":Any"])
    };
    if rng.below(3) == 0 {
        return format!("{name}{qual}");
    }
    let op = if bad(rng) {
        rng.pick::<&str>(&["<>", "=>", "=<", "><"])
    } else {
        rng.pick::<&str>(&["<<", "<=", "=", ">=", ">>", "<", ">", ""])
    };
    let v = if bad(rng) {
        rng.pick::<&str>(&["1:", "1.0-", "a1", "1 2", "", "1_0", "(1)"])
    } else {
        rng.pick::<&str>(&["1.0", "2:1.0-1", "1~rc1", "0.9+dfsg-2", "1.2.3"])
    };
    let sp = rng.pick::<&str>(&[" ", "", "  ", "\n "]);
    let close = if bad(rng) {
        rng.pick::<&str>(&["", " x)", "))"])
    } else {
        ")"
    };
    format!("{name}{qual} ({op}{sp}{v}{close}")
}

fn field_value(rng: &mut Rng) -> String {
    let mut out = String::new();
    for g in 0..1 + rng.below(3) {
        if g > 0 {
            out.push_str(rng.pick::<&str>(&[", ", ",", ",\n ", " , "]));
        }
        for a in 0..1 + usize::from(rng.below(4) == 0) {
            if a > 0 {
                out.push_str(rng.pick::<&str>(&[" | ", "|"]));
            }
            out.push_str(&atom(rng));
        }
    }
    match rng.below(30) {
        0 => out.push(','),
        1 => out.push_str(" |"),
        2 => out.insert_str(0, ", "),
        3 => out.push_str(" junk"),
        _ => {}
    }
    out
}

#[test]
fn relation_fields_agree_with_dpkg() {
    require_tool("dpkg-deb");
    let mut rng = Rng::new(0x5eed_1e1a);
    let mut cases = Vec::new();
    while cases.len() < CASES {
        let field = *rng.pick::<&str>(&["Depends", "Depends", "Provides", "Breaks"]);
        let value = field_value(&mut rng);
        if value.contains('\t') || value.trim().is_empty() {
            continue;
        }
        cases.push((field, value));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut list = String::new();
    for (i, (field, value)) in cases.iter().enumerate() {
        let control = format!(
            "Package: t\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.invalid>\nDescription: t\n{field}: {value}\n"
        );
        let case_dir = dir.path().join(format!("c{i}"));
        std::fs::create_dir_all(case_dir.join("DEBIAN")).unwrap();
        std::fs::write(case_dir.join("DEBIAN/control"), control).unwrap();
        writeln!(list, "{}", case_dir.display()).unwrap();
    }
    std::fs::write(dir.path().join("list"), list).unwrap();
    let script = r#"
        while read -r d; do
            LC_ALL=C dpkg-deb -Znone --build "$d" "$d.deb" >/dev/null 2>&1
            echo $?
        done < "$1"
    "#;
    let out = stdout(
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg("bash")
            .arg(dir.path().join("list")),
    );
    let answers: Vec<&str> = out.lines().collect();
    assert_eq!(answers.len(), cases.len());
    let mut mismatches = Vec::new();
    let mut accepted = 0;
    for ((field, value), rc) in cases.iter().zip(&answers) {
        let ours = parse_relations(field, value, &mut Interner::new());
        let strict_ok = ours.as_ref().is_ok_and(|r| {
            r.atoms().iter().all(|d| {
                d.constraint
                    .as_ref()
                    .is_none_or(|c| c.version.lint().is_none())
            })
        });
        accepted += usize::from(strict_ok);
        let dpkg_ok = *rc == "0";
        if strict_ok != dpkg_ok {
            mismatches.push(format!("{field}: {value:?}: dpkg rc {rc}, ours {ours:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} disagree:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(
        accepted > CASES / 5 && accepted < CASES * 4 / 5,
        "accepted {accepted} of {CASES}"
    );
}
