//! OpenPGP ASCII armor (RFC 4880 §6): gpgv reads binary keyrings only, and
//! apt sources name `.asc` files or carry inline armored keys.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::super::error::Error;

const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const END: &str = "-----END PGP PUBLIC KEY BLOCK-----";

/// Decodes every armored public key block in `text` (concatenated, as a
/// binary keyring holds them). A deb822 inline key writes the empty line
/// after the armor headers as ` .`; that is accepted too.
pub fn dearmor(text: &str, origin: &str) -> Result<Vec<u8>, Error> {
    let fail = |problem| Error::Armor {
        origin: origin.to_owned(),
        problem,
    };
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim);
    let mut blocks = 0;
    while lines.by_ref().any(|l| l == BEGIN) {
        // Armor headers ("Comment: ...") end at an empty line.
        loop {
            match lines.next() {
                None => return Err(fail("no end of the armor headers")),
                Some("" | ".") => break,
                Some(l) if l.contains(": ") => continue,
                Some(_) => return Err(fail("armor header without an empty line after it")),
            }
        }
        let mut body = String::new();
        let mut checksum = None;
        loop {
            match lines.next() {
                None => return Err(fail("no END line")),
                Some(END) => break,
                Some(l) if l.starts_with('=') && l.len() == 5 => checksum = Some(&l[1..]),
                Some(l) => body.push_str(l),
            }
        }
        let data = STANDARD
            .decode(body.as_bytes())
            .map_err(|_| fail("body is not base64"))?;
        if let Some(sum) = checksum {
            let want = STANDARD
                .decode(sum.as_bytes())
                .map_err(|_| fail("checksum is not base64"))?;
            let crc = crc24(&data).to_be_bytes();
            if want[..] != crc[1..] {
                return Err(fail("CRC-24 checksum mismatch"));
            }
        }
        out.extend_from_slice(&data);
        blocks += 1;
    }
    if blocks == 0 {
        return Err(fail("no BEGIN PGP PUBLIC KEY BLOCK line"));
    }
    Ok(out)
}

/// The armor checksum (RFC 4880 §6.1).
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0x00B7_04CE;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4CFB;
            }
        }
    }
    crc & 0x00FF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armor(data: &[u8], blank: &str) -> String {
        let crc = crc24(data).to_be_bytes();
        format!(
            "{BEGIN}\nComment: test\n{blank}\n{}\n={}\n{END}\n",
            STANDARD.encode(data),
            STANDARD.encode(&crc[1..])
        )
    }

    #[test]
    fn round_trip_and_checks() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(dearmor(&armor(&data, ""), "k").unwrap(), data);
        // deb822 inline form, two blocks.
        let two = format!("{}{}", armor(&data, " ."), armor(b"xy", ""));
        let mut both = data.clone();
        both.extend_from_slice(b"xy");
        assert_eq!(dearmor(&two, "k").unwrap(), both);
        let bad = armor(&data, "").replacen("AAc", "AAd", 1);
        assert!(dearmor(&bad, "k").is_err());
        assert!(dearmor("nothing here", "k").is_err());
        assert!(dearmor(&format!("{BEGIN}\n\n!!!\n{END}\n"), "k").is_err());
        // CRC-24 of "123456789" (the standard check value).
        assert_eq!(crc24(b"123456789"), 0x21CF02);
    }
}
