//! Per-node iPXE scripts (`/boot/<mac>.ipxe`).
//!
//! One script covers both firmware paths, chosen by iPXE at run time from
//! `${platform}`:
//! - UEFI, when the image has a UKI (`node.efi`): `chain` it with the
//!   command line passed explicitly. iPXE hands the image its name plus the
//!   arguments as LoadOptions, and systemd-stub then uses (and measures
//!   into PCR 12) those instead of the UKI's `.cmdline`: [`boot_cmdline`]
//!   and [`uki_load_options`] are the one place that string is made, so
//!   the attestation side predicts PCR 12 from the same function.
//! - BIOS, and UEFI without a UKI: `kernel vmlinuz initrd=initrd.img
//!   <cmdline>`, `initrd initrd.img`, `boot`. Debian 12's EFI iPXE hands
//!   the initrd to the kernel only when the command line names it
//!   (`initrd=`); BIOS ignores the argument.
//!
//! Any failure falls to `:failed`, which waits and asks the server for the
//! script again with `?attempt=N`; the server doubles the wait per attempt
//! up to `[http] retry-max-seconds`, so a node whose image or server is
//! missing polls gently instead of hammering. Every request of the script
//! is a timeline event.

use crate::images::Image;
use crate::site::MacAddr;

/// The UKI's file name in an image.
pub const UKI: &str = "node.efi";
/// The kernel's file name in an image.
pub const KERNEL: &str = "vmlinuz";
/// The initrd's file name in an image (also the `initrd=` argument).
pub const INITRD: &str = "initrd.img";

/// Characters iPXE's script parser would interpret inside a command line
/// (`${...}` expansion, `||`/`&&`, comments, quoting), or that would end
/// the line. An image whose command line holds one is refused at load.
pub fn cmdline_is_script_safe(cmdline: &str) -> bool {
    !cmdline
        .chars()
        .any(|c| matches!(c, '$' | '&' | '|' | '#' | '"' | '\'' | '\\') || c.is_control())
}

/// The kernel command line every boot path passes for `image`: the image's
/// own command line, then where the agent finds the server and which
/// image it booted. PCR 12 (UKI path) is predicted from this string.
pub fn boot_cmdline(image: &Image, base_url: &str) -> String {
    let mut line = image.cmdline.trim().to_owned();
    if !line.is_empty() {
        line.push(' ');
    }
    line.push_str(&format!(
        "ironrack.server={base_url} ironrack.image={}",
        image.label()
    ));
    line
}

/// The LoadOptions `node.efi` receives from the script's `chain` line:
/// what systemd-stub measures into PCR 12.
pub fn uki_load_options(image: &Image, base_url: &str) -> String {
    ironrack_builder::boot::measure::ipxe_load_options(UKI, &boot_cmdline(image, base_url))
}

/// URL of an artifact of `image`.
pub fn artifact_url(base_url: &str, image: &Image, artifact: &str) -> String {
    format!(
        "{base_url}/images/{}/{}/{artifact}",
        image.name, image.version
    )
}

/// URL of the node's script, for attempt `attempt`.
pub fn script_url(base_url: &str, mac: &MacAddr, attempt: u32) -> String {
    format!(
        "{base_url}/boot/{}.ipxe?attempt={attempt}",
        mac.to_hyphenated()
    )
}

/// The failure tail every script ends with: wait, then ask again.
fn retry_tail(base_url: &str, mac: &MacAddr, attempt: u32, delay: u32, what: &str) -> String {
    format!(
        ":failed\n\
         echo ironrack: {what}; asking the server again in {delay} s (attempt {next})\n\
         sleep {delay}\n\
         chain --autofree {url} || goto failed\n",
        next = attempt + 1,
        url = script_url(base_url, mac, attempt + 1),
    )
}

/// The boot script for `image`.
pub fn boot_script(
    image: &Image,
    base_url: &str,
    mac: &MacAddr,
    attempt: u32,
    delay: u32,
) -> String {
    let cmdline = boot_cmdline(image, base_url);
    let mut s = format!(
        "#!ipxe\n\
         # ironrack: {label} for {mac}\n\
         echo ironrack: booting {label}\n\
         iseq ${{platform}} efi && goto uefi || goto kernel\n\
         :uefi\n",
        label = image.label(),
    );
    if image.artifact(UKI).is_some() {
        s.push_str(&format!(
            "chain --autofree {} {cmdline} || goto failed\n",
            artifact_url(base_url, image, UKI)
        ));
    } else {
        s.push_str("goto kernel\n");
    }
    s.push_str(&format!(
        ":kernel\n\
         kernel {kernel} initrd={INITRD} {cmdline} || goto failed\n\
         initrd {initrd} || goto failed\n\
         boot || goto failed\n",
        kernel = artifact_url(base_url, image, KERNEL),
        initrd = artifact_url(base_url, image, INITRD),
    ));
    s.push_str(&retry_tail(
        base_url,
        mac,
        attempt,
        delay,
        &format!("boot of {} failed", image.label()),
    ));
    s
}

/// A script that says why the node cannot boot now and polls the server.
pub fn wait_script(base_url: &str, mac: &MacAddr, attempt: u32, delay: u32, why: &str) -> String {
    let why = sanitize(why);
    format!(
        "#!ipxe\n# ironrack: {mac} waits: {why}\necho ironrack: {why}\ngoto failed\n{}",
        retry_tail(base_url, mac, attempt, delay, "waiting")
    )
}

/// A script for a node the site ignores: say so and return to the firmware
/// (its next boot device).
pub fn ignore_script(mac: &MacAddr) -> String {
    format!(
        "#!ipxe\necho ironrack: {mac} is not in this site and unknown nodes are ignored\nexit\n"
    )
}

/// Makes free text safe on an `echo` line.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if cmdline_is_script_safe(&c.to_string()) {
                c
            } else {
                ' '
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn image(with_uki: bool) -> Image {
        let mut artifacts = BTreeMap::new();
        for name in [KERNEL, INITRD].into_iter().chain(with_uki.then_some(UKI)) {
            artifacts.insert(
                name.to_owned(),
                std::sync::Arc::new(crate::images::VerifiedArtifact::for_tests(name)),
            );
        }
        Image {
            name: "gpu-node".into(),
            channel: "stable".into(),
            version: 7,
            dir: "/out/gpu-node/7".into(),
            signer: "ci".into(),
            key_id: "0".into(),
            manifest_sha256: ironrack_keys::Sha256Digest([0; 32]),
            cmdline: "console=ttyS0 quiet".into(),
            artifacts,
            signed_files: Default::default(),
            released: Err("not an attested image".into()),
        }
    }

    const BASE: &str = "http://198.18.0.1:8080";

    #[test]
    fn cmdline_and_load_options_are_one_string() {
        let img = image(true);
        assert_eq!(
            boot_cmdline(&img, BASE),
            "console=ttyS0 quiet ironrack.server=http://198.18.0.1:8080 ironrack.image=gpu-node@7"
        );
        assert_eq!(
            uki_load_options(&img, BASE),
            format!("node.efi {}", boot_cmdline(&img, BASE))
        );
    }

    #[test]
    fn uefi_chains_the_uki_with_the_cmdline_and_bios_passes_initrd() {
        let mac: MacAddr = "52:54:00:00:00:01".parse().unwrap();
        let s = boot_script(&image(true), BASE, &mac, 0, 2);
        let cmdline = boot_cmdline(&image(true), BASE);
        assert!(s.starts_with("#!ipxe\n"));
        assert!(
            s.contains(&format!(
                "chain --autofree {BASE}/images/gpu-node/7/node.efi {cmdline} || goto failed"
            )),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "kernel {BASE}/images/gpu-node/7/vmlinuz initrd=initrd.img {cmdline} || goto failed"
            )),
            "{s}"
        );
        assert!(s.contains(
            "sleep 2\nchain --autofree http://198.18.0.1:8080/boot/52-54-00-00-00-01.ipxe?attempt=1"
        ));
        let no_uki = boot_script(&image(false), BASE, &mac, 3, 16);
        assert!(!no_uki.contains("node.efi"));
        assert!(no_uki.contains(":uefi\ngoto kernel\n"));
        assert!(no_uki.contains("attempt=4"));
    }

    #[test]
    fn unsafe_command_lines_are_detected() {
        assert!(cmdline_is_script_safe(
            "console=ttyS0,115200 root=/dev/ram0 a.b=c-d"
        ));
        for bad in ["a=${x}", "a || b", "x # y", "a\nb", "\"q\""] {
            assert!(!cmdline_is_script_safe(bad), "{bad}");
        }
        let mac: MacAddr = "52:54:00:00:00:01".parse().unwrap();
        let s = wait_script(BASE, &mac, 0, 2, "image ${evil} || refused");
        assert!(!s.contains("${evil}") && !s.contains("|| refused"), "{s}");
    }
}
