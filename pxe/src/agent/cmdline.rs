//! The agent's parameters on the kernel command line (`/proc/cmdline`):
//! `ironrack.server=URL` (wins over the server in agent.json),
//! `ironrack.image=NAME@VERSION` (as the server's iPXE script writes it)
//! and `BOOTIF=01-aa-bb-cc-dd-ee-ff` (the boot NIC, when iPXE passes it).
//!
//! Words are split as the kernel's `next_arg` splits them: on blanks
//! outside double quotes, with the quotes around a value dropped
//! (`ironrack.server="http://x"`). Parameters end at `--` (the words after
//! it are arguments of init, not parameters). When a parameter is given
//! twice the last one wins; an empty value counts as not given.

/// The agent's kernel parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCmdline {
    /// `ironrack.server=`.
    pub server: Option<String>,
    /// `ironrack.image=`.
    pub image: Option<String>,
    /// `BOOTIF=`: the boot NIC's MAC (PXELINUX's form, which iPXE's
    /// `${netX/mac:hexhyp}` gives with a `01-` prefix).
    pub bootif: Option<String>,
}

/// The parameter naming the server.
pub const SERVER_PARAM: &str = "ironrack.server";
/// The parameter naming the image.
pub const IMAGE_PARAM: &str = "ironrack.image";
/// The parameter naming the boot NIC.
pub const BOOTIF_PARAM: &str = "BOOTIF";

/// The MAC of a `BOOTIF=` value: `01-aa-bb-cc-dd-ee-ff` (ARP type 1,
/// Ethernet) or the bare six hex pairs, `-` or `:` separated.
pub fn bootif_mac(value: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = value.split(['-', ':']).collect();
    let pairs = match parts.as_slice() {
        [kind, rest @ ..] if rest.len() == 6 && *kind == "01" => rest,
        all if all.len() == 6 => all,
        _ => return None,
    };
    let mut mac = [0u8; 6];
    for (byte, pair) in mac.iter_mut().zip(pairs) {
        if pair.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(mac)
}

impl KernelCmdline {
    /// Parses the text of `/proc/cmdline`.
    pub fn parse(text: &str) -> Self {
        let mut cmdline = Self::default();
        for (key, value) in words(text) {
            if key == "--" && value.is_none() {
                break;
            }
            let value = value.filter(|v| !v.is_empty());
            match key.as_str() {
                SERVER_PARAM => cmdline.server = value,
                IMAGE_PARAM => cmdline.image = value,
                BOOTIF_PARAM => cmdline.bootif = value,
                _ => {}
            }
        }
        cmdline
    }
}

/// `(key, value)` pairs, quotes removed as the kernel removes them.
fn words(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return out;
        }
        let mut word = String::new();
        let mut in_quote = false;
        while let Some(c) = chars.next_if(|c| in_quote || !c.is_whitespace()) {
            if c == '"' {
                in_quote = !in_quote;
            }
            word.push(c);
        }
        out.push(split_word(&word));
    }
}

/// The kernel's treatment of one word: a quote opening the word is
/// dropped, `key=value` splits at the first `=`, a value in quotes loses
/// them.
fn split_word(word: &str) -> (String, Option<String>) {
    let word = word.strip_prefix('"').map_or(word.to_owned(), |rest| {
        rest.strip_suffix('"').unwrap_or(rest).to_owned()
    });
    match word.split_once('=') {
        None => (word, None),
        Some((key, value)) => {
            let value = value
                .strip_prefix('"')
                .map_or(value, |v| v.strip_suffix('"').unwrap_or(v));
            (key.to_owned(), Some(value.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn debian_cmdline_with_our_parameters() {
        let text = "BOOT_IMAGE=/vmlinuz console=ttyS0 panic=-1 \
                    ironrack.server=http://198.18.0.1:8080 ironrack.image=gpu-node quiet\n";
        assert_eq!(
            KernelCmdline::parse(text),
            KernelCmdline {
                server: Some("http://198.18.0.1:8080".into()),
                image: Some("gpu-node".into()),
                bootif: None,
            }
        );
    }

    #[test]
    fn bootif_as_ipxe_writes_it() {
        let parsed = KernelCmdline::parse("BOOTIF=01-52-54-00-12-00-31 console=ttyS0");
        assert_eq!(parsed.bootif.as_deref(), Some("01-52-54-00-12-00-31"));
        let mac = [0x52, 0x54, 0x00, 0x12, 0x00, 0x31];
        assert_eq!(bootif_mac("01-52-54-00-12-00-31"), Some(mac));
        assert_eq!(bootif_mac("52:54:00:12:00:31"), Some(mac));
        for bad in [
            "06-52-54-00-12-00-31",
            "52-54-00-12-00",
            "01-52-54-00-12-00-3g",
            "01-5-254-00-12-00-31",
            "",
        ] {
            assert_eq!(bootif_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn quotes_last_wins_empty_and_double_dash() {
        let text =
            r#"ironrack.image=old ironrack.server="http://198.18.0.1:8080/a b" ironrack.image=new"#;
        let parsed = KernelCmdline::parse(text);
        assert_eq!(parsed.server.as_deref(), Some("http://198.18.0.1:8080/a b"));
        assert_eq!(parsed.image.as_deref(), Some("new"));
        assert_eq!(
            KernelCmdline::parse("ironrack.server= ironrack.image"),
            KernelCmdline::default()
        );
        // After `--` the words are init's arguments, not parameters.
        assert_eq!(
            KernelCmdline::parse("console=ttyS0 -- ironrack.image=x"),
            KernelCmdline::default()
        );
        // A whole word in quotes (the kernel allows "key=value").
        assert_eq!(
            KernelCmdline::parse(r#""ironrack.image=quoted""#)
                .image
                .as_deref(),
            Some("quoted")
        );
        // Other parameters that merely start with ours are not ours.
        assert_eq!(
            KernelCmdline::parse("ironrack.server.backup=x ironrack.images=y"),
            KernelCmdline::default()
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_finds_a_plain_value(
            noise in "\\PC{0,200}",
            image in "[a-z0-9-]{1,20}",
        ) {
            let _ = KernelCmdline::parse(&noise);
            // Our parameter after a word boundary is found whatever came before,
            // as long as the noise leaves no quote open.
            prop_assume!(noise.matches('"').count() % 2 == 0);
            let text = format!("{noise} ironrack.image={image}");
            prop_assume!(!words(&noise).iter().any(|(k, v)| k == "--" && v.is_none()));
            prop_assert_eq!(KernelCmdline::parse(&text).image, Some(image));
        }
    }
}
