//! Version parsing and ordering against the real `dpkg --compare-versions`.
//!
//! Thousands of generated pairs (seeded, so every run checks the same
//! cases) are written to a file and fed to ONE bash process that calls
//! dpkg per line: spawning dpkg costs ~2 ms, spawning a shell per pair
//! from Rust would triple that. For each pair dpkg must agree with us on
//! the exit status (relation holds / does not / syntax error) and on
//! whether it complains about the syntax (a warning or an error).

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::process::Command;

use ironrack_builder::source::{RelOp, Version};

use crate::util::{Rng, require_tool, stdout};

const PAIRS: usize = 3000;

/// The operators dpkg --compare-versions takes, with our reading of each.
fn holds(op: &str, ord: Ordering) -> bool {
    match op {
        "lt" => ord.is_lt(),
        "le" => ord.is_le(),
        "eq" => ord.is_eq(),
        "ne" => ord.is_ne(),
        "ge" => ord.is_ge(),
        "gt" => ord.is_gt(),
        sym => RelOp::parse(sym).expect("known operator").holds(ord),
    }
}

const OPS: [&str; 13] = [
    "lt", "le", "eq", "ne", "ge", "gt", "<<", "<=", "=", ">=", ">>", "<", ">",
];

fn token(rng: &mut Rng, revision: bool) -> String {
    let digits = |rng: &mut Rng, n: usize| {
        (0..n)
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect::<String>()
    };
    match rng.below(20) {
        0..=6 => {
            let n = 1 + rng.below(3);
            digits(rng, n)
        }
        7 => {
            let n = 1 + rng.below(2);
            format!("0{}", digits(rng, n))
        }
        8 => {
            let n = 18 + rng.below(12); // beyond u64
            digits(rng, n)
        }
        9..=10 => rng
            .pick(&["a", "b", "z", "A", "Z", "rc", "dfsg", "git", "beta"])
            .to_string(),
        11..=13 => ".".into(),
        14 => "+".into(),
        15..=16 => rng.pick(&["~", "~~", "~rc"]).to_string(),
        17 if !revision => rng.pick(&["-", ":"]).to_string(),
        // Characters dpkg warns about, and one it rejects (a blank).
        18 => rng.pick(&["_", "@", "é", "%", "=", "<"]).to_string(),
        19 if rng.below(8) == 0 => " ".into(),
        _ => digits(rng, 1),
    }
}

fn version(rng: &mut Rng) -> String {
    let mut v = String::new();
    match rng.below(16) {
        0..=10 => {}
        11 => v.push_str(rng.pick::<&str>(&["0:", "1:", "2:", "01:", "+1:"])),
        12 => v.push_str(rng.pick::<&str>(&["a:", ":", "1a:", "2147483648:", "99999999999:"])),
        _ => v.push_str(&format!("{}:", rng.below(4))),
    }
    if rng.below(12) == 0 {
        v.push_str(rng.pick::<&str>(&["a", "~", "."]));
    } else {
        v.push(char::from(b'0' + rng.below(10) as u8));
    }
    for _ in 0..rng.below(6) {
        v.push_str(&token(rng, false));
    }
    match rng.below(10) {
        0..=4 => {}
        5 => v.push('-'), // empty revision: rejected
        _ => {
            v.push('-');
            for _ in 0..1 + rng.below(3) {
                v.push_str(&token(rng, true));
            }
        }
    }
    if rng.below(25) == 0 {
        v = format!(" {v} ");
    }
    v
}

/// A variant of `v` that differs in one small place, so that pairs are
/// often close (equal, or one token apart) rather than trivially ordered.
fn mutate(rng: &mut Rng, v: &str) -> String {
    let mut chars: Vec<char> = v.chars().collect();
    let at = rng.below(chars.len() + 1);
    match rng.below(5) {
        0 => chars.insert(at, *rng.pick(&['0', '1', '9', '~', '.', 'a', '+'])),
        1 if at < chars.len() => {
            chars.remove(at);
        }
        2 if at < chars.len() => chars[at] = *rng.pick(&['0', '1', '~', 'b', '.', '+']),
        3 => return format!("{v}0"),
        _ => return v.to_string(),
    }
    chars.into_iter().collect()
}

fn usable(v: &str) -> bool {
    // dpkg would read a leading '-' as an option, and "" as "no version".
    !v.trim_start().starts_with('-') && !v.trim().is_empty() && !v.contains('\t')
}

struct Case {
    a: String,
    op: &'static str,
    b: String,
}

fn cases() -> Vec<Case> {
    let mut rng = Rng::new(0x1d0c_5eed);
    let mut out = Vec::with_capacity(PAIRS);
    while out.len() < PAIRS {
        let a = version(&mut rng);
        let b = if rng.below(2) == 0 {
            mutate(&mut rng, &a)
        } else {
            version(&mut rng)
        };
        if usable(&a) && usable(&b) {
            let op = *rng.pick(&OPS);
            out.push(Case { a, op, b });
        }
    }
    // Corners worth pinning whatever the generator does.
    for (a, op, b) in [
        ("1.0", "eq", "1.0-0"),
        ("1.0", "eq", "1."),
        ("1.0a", "lt", "1.a"),
        ("1:0", "gt", "99999999999999999999999999"),
        ("1.0~rc1", "lt", "1.0"),
        ("1.0~~", "lt", "1.0~"),
        ("2.0", "gt", "2"),
        ("+1:2", "eq", "1:2"),
        ("0:1", "eq", "1"),
        ("1.0-1~bpo1", "lt", "1.0-1"),
    ] {
        out.push(Case {
            a: a.into(),
            op,
            b: b.into(),
        });
    }
    out
}

#[test]
fn agrees_with_dpkg_compare_versions() {
    require_tool("dpkg");
    let cases = cases();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.tsv");
    let mut text = String::new();
    for c in &cases {
        writeln!(text, "{}\t{}\t{}", c.a, c.op, c.b).unwrap();
    }
    std::fs::write(&input, text).unwrap();
    let script = r#"
        while IFS=$'\t' read -r a op b; do
            err=$(LC_ALL=C dpkg --compare-versions "$a" "$op" "$b" 2>&1 >/dev/null)
            rc=$?
            case $err in *"bad syntax"*) bad=1 ;; *) bad=0 ;; esac
            echo "$rc $bad"
        done < "$1"
    "#;
    let out = stdout(
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg("bash")
            .arg(&input),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), cases.len(), "one answer per pair");

    let mut mismatches = Vec::new();
    let (mut errors, mut warnings, mut held) = (0, 0, 0);
    for (c, line) in cases.iter().zip(&lines) {
        let (pa, pb) = (Version::parse(&c.a), Version::parse(&c.b));
        let complains = |p: &Result<Version, _>| p.as_ref().map_or(true, |v| v.lint().is_some());
        let want_bad = complains(&pa) || (pa.is_ok() && complains(&pb));
        let want_rc = match (&pa, &pb) {
            (Ok(a), Ok(b)) => u8::from(!holds(c.op, a.compare(b))),
            _ => 2,
        };
        let want = format!("{want_rc} {}", u8::from(want_bad));
        errors += usize::from(want_rc == 2);
        warnings += usize::from(want_bad && want_rc != 2);
        held += usize::from(want_rc == 0);
        if *line != want {
            mismatches.push(format!(
                "{:?} {} {:?}: dpkg says {line}, we say {want}",
                c.a, c.op, c.b
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} disagree:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches[..mismatches.len().min(30)].join("\n")
    );
    // The generator must exercise all three outcomes, or this test proves little.
    assert!(
        errors > 100 && warnings > 100 && held > 500,
        "errors {errors}, warnings {warnings}, held {held}"
    );
}
