//! Attestation over HTTP, end to end: the real `ironrack serve` binary in a
//! network namespace this test makes, serving a signed image; a node agent
//! on a real swtpm (EK certificate from swtpm's local CA, which site.toml's
//! `[attest] ek-roots` trusts) whose transport is `curl`, the real
//! third-party client, run inside the namespace. Enrollment, an attested
//! boot, a second boot after a TPM power cycle, a replayed quote, a quote
//! over another nonce, an oversize and a malformed body, a wrong method;
//! the verdicts in the node's timeline (`ironrack nodes show`) and
//! `ironrack nodes revoke` blocking the node while the server runs.
//!
//! Needs root (namespaces), swtpm + swtpm-tools, curl (scripts/deps.sh).

mod serve_support;

#[allow(dead_code)]
#[path = "../pxe/tests/tpm/swtpm.rs"]
mod swtpm;

#[allow(dead_code)]
#[path = "../pxe/tests/attest_flow/support.rs"]
mod attest_support;

use std::io::Write as _;
use std::process::{Command, Stdio};

use ironrack_keys::{Timestamp, Trust};
use ironrack_pxe::agent::NodeAgent;
use ironrack_pxe::attest::image::ReleasedImage;
use ironrack_pxe::attest::protocol::{
    self, AttestClient, ImageRef, NodeId, QuoteSubmission, Request, Response, Verdict,
};
use ironrack_pxe::attest::tpm::SwtpmSocket;
use serve_support::*;
use sha2::{Digest as _, Sha256};

use attest_support::Firmware;

const NODE_MAC: &str = "52:54:00:12:00:31";
const IMAGE: &str = "gpu-node";
const VERSION: u64 = 7;

/// One HTTP exchange as curl saw it.
struct Exchange {
    status: u16,
    body: Vec<u8>,
}

/// `curl` inside the namespace: JSON body on stdin, status code after it.
fn curl(ns: &str, method: &str, url: &str, body: Option<&[u8]>) -> Exchange {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "curl", "-sS", "--max-time", "60"])
        .args(["-X", method, "-w", "\n%{http_code}"]);
    if body.is_some() {
        cmd.args([
            "--data-binary",
            "@-",
            "-H",
            "content-type: application/json",
        ]);
    }
    let mut child = cmd
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl (scripts/deps.sh installs it)");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(body) = body {
        // A refused body may close the connection early: curl reports it.
        let _ = stdin.write_all(body);
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "curl {method} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let split = out.stdout.iter().rposition(|&b| b == b'\n').unwrap();
    Exchange {
        status: String::from_utf8_lossy(&out.stdout[split + 1..])
            .parse()
            .unwrap(),
        body: out.stdout[..split].to_vec(),
    }
}

/// The agent's transport, written here with curl as the HTTP client.
struct CurlClient {
    ns: String,
    /// Every quote submission sent, as sent.
    quotes: Vec<QuoteSubmission>,
}

impl AttestClient for CurlClient {
    fn call(
        &mut self,
        request: &Request,
    ) -> Result<Response, Box<dyn std::error::Error + Send + Sync>> {
        let (method, path) = request.route();
        let url = match request {
            Request::Nonce(n) => format!("{BASE_URL}{path}?{}", n.to_query()),
            _ => format!("{BASE_URL}{path}"),
        };
        if let Request::Quote(q) = request {
            self.quotes.push((**q).clone());
        }
        let body = request.body();
        let got = curl(
            &self.ns,
            method,
            &url,
            (method == "POST").then_some(&body[..]),
        );
        match got.status {
            200 | 400 | 403 => Ok(protocol::decode("response", &got.body)?),
            other => Err(format!("{method} {path}: HTTP {other}").into()),
        }
    }
}

fn refusal_code(got: &Exchange) -> String {
    match protocol::decode::<Response>("response", &got.body).unwrap() {
        Response::Verdict(Verdict::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The signed image: a rootfs and a UKI stand-in, with the measurements a
/// node booted by `firmware` must show.
fn publish_image(lab: &Lab, firmware: &Firmware) {
    let rootfs = lab.path("src/rootfs.squashfs");
    std::fs::create_dir_all(rootfs.parent().unwrap()).unwrap();
    std::fs::write(
        &rootfs,
        (0..300_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let uki = lab.path("src/node.efi");
    std::fs::write(&uki, b"MZ stands in for the UKI").unwrap();
    let payload = serde_json::json!({
        "kernel": { "cmdline": "console=ttyS0" },
        "measurements": {
            "uki": "node.efi",
            "uki-authenticode": hex::encode(firmware.uki_authenticode),
            "pcr11": hex::encode(firmware.pcr11()),
            "agent-pcr": 15,
        },
    });
    lab.world
        .image_with_payload(
            &lab.path("out"),
            IMAGE,
            VERSION,
            payload,
            &[("rootfs.squashfs", &rootfs), ("node.efi", &uki)],
        )
        .unwrap();
}

/// What the agent does before it quotes: fetch the manifest, its signature
/// and the rootfs over HTTP, verify them, measure them into PCR 15.
fn fetch_and_measure(lab: &Lab, agent: &mut NodeAgent<SwtpmSocket, CurlClient>) -> ImageRef {
    let base = format!("{BASE_URL}/images/{IMAGE}/{VERSION}");
    let get = |file: &str| {
        let got = curl(&lab.ns, "GET", &format!("{base}/{file}"), None);
        assert_eq!(got.status, 200, "{file}");
        got.body
    };
    let trust = Trust::load(&lab.world.trust_path, &[]).unwrap();
    let image = ReleasedImage::verify(
        &trust,
        &get("manifest.json"),
        &get("manifest.json.minisig"),
        None,
        Timestamp::now(),
    )
    .unwrap();
    let rootfs = get(&image.rootfs_name);
    assert_eq!(
        <[u8; 32]>::from(Sha256::digest(&rootfs)),
        image.rootfs_sha256
    );
    agent.measure_image(&image).unwrap();
    ImageRef {
        name: image.name,
        version: image.version,
    }
}

fn ironrack_ok(lab: &Lab, args: &[&str]) -> String {
    let out = lab.ironrack(args);
    assert!(
        out.status.success(),
        "ironrack {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn event_kinds(lab: &Lab, site: &str) -> Vec<String> {
    let shown: serde_json::Value = serde_json::from_str(&ironrack_ok(
        lab,
        &["nodes", "show", NODE_MAC, "--site", site, "--json"],
    ))
    .unwrap();
    shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_node_attests_over_http_with_curl_and_is_revoked_by_the_cli() {
    if skip("a_node_attests_over_http_with_curl_and_is_revoked_by_the_cli") || !swtpm::available() {
        return;
    }
    let mut lab = Lab::new();
    // As systemd-stub measures the command line the server's script passes.
    let firmware = Firmware::served(
        "node.efi console=ttyS0 ironrack.server=http://198.18.0.1:8080 ironrack.image=gpu-node@7",
    );
    publish_image(&lab, &firmware);
    let (root, intermediate) = swtpm::local_ca_pem();
    std::fs::write(lab.path("ek-root.pem"), root).unwrap();
    std::fs::write(lab.path("ek-intermediate.pem"), intermediate).unwrap();
    let site = lab.write_site(&format!(
        "[[rack.node]]\nmac = \"{NODE_MAC}\"\nhostname = \"gpu-r1-n3\"\nip = \"198.18.0.13\"\nimage = \"{IMAGE}\"\n\n\
         [attest]\nek-roots = [\"ek-root.pem\"]\nek-intermediates = [\"ek-intermediate.pem\"]\n"
    ));
    let site = site.to_str().unwrap().to_owned();
    lab.serve();

    // Enrollment and a first measured boot.
    let (mut sw, mut tpm) = swtpm::Swtpm::started();
    firmware.boot(&mut tpm);
    let node = NodeId::new(NODE_MAC).unwrap();
    let client = CurlClient {
        ns: lab.ns.clone(),
        quotes: Vec::new(),
    };
    let mut agent = NodeAgent::new(tpm, client, node.clone());
    assert_eq!(
        agent.enroll().unwrap(),
        Verdict::Enrolled { node: node.clone() }
    );
    let image = fetch_and_measure(&lab, &mut agent);
    let attested = Verdict::Attested {
        node: node.clone(),
        image: image.clone(),
        secret: None,
    };
    assert_eq!(
        agent.attest(&firmware.log, image.clone()).unwrap(),
        attested
    );

    // The quote replayed as it was sent: its nonce is spent.
    let first = agent.client().quotes[0].clone();
    let quote_url = format!("{BASE_URL}/attest/quote");
    let replay = curl(&lab.ns, "POST", &quote_url, Some(&protocol::encode(&first)));
    assert_eq!(
        (replay.status, refusal_code(&replay)),
        (403, "nonce-replayed".into())
    );

    // A fresh nonce in the submission, but the quote signs the old one.
    let nonce_url = format!("{BASE_URL}/attest/nonce?node={NODE_MAC}");
    let fresh = curl(&lab.ns, "GET", &nonce_url, None);
    assert_eq!(fresh.status, 200);
    let Response::Nonce(fresh) = protocol::decode::<Response>("nonce", &fresh.body).unwrap() else {
        panic!("a nonce answer");
    };
    let mut wrong = first.clone();
    wrong.nonce = fresh.nonce;
    let got = curl(&lab.ns, "POST", &quote_url, Some(&protocol::encode(&wrong)));
    assert_eq!(
        (got.status, refusal_code(&got)),
        (403, "quote-nonce".into())
    );

    // Bodies the server must not take.
    let huge = vec![b' '; protocol::MAX_BODY + 1];
    let got = curl(&lab.ns, "POST", &quote_url, Some(&huge));
    assert_eq!(got.status, 413);
    let got = curl(&lab.ns, "POST", &quote_url, Some(b"{\"node\": "));
    assert_eq!((got.status, refusal_code(&got)), (400, "malformed".into()));
    let got = curl(&lab.ns, "GET", &quote_url, None);
    assert_eq!(got.status, 405);
    let got = curl(
        &lab.ns,
        "GET",
        &format!("{BASE_URL}/attest/nonce?node=a/b"),
        None,
    );
    assert_eq!((got.status, refusal_code(&got)), (400, "malformed".into()));

    // A second boot: power cycle, the persisted AK, no re-enrollment.
    drop(agent);
    sw.restart();
    let mut tpm = sw.connect();
    assert!(tpm.startup().unwrap());
    firmware.boot(&mut tpm);
    let client = CurlClient {
        ns: lab.ns.clone(),
        quotes: Vec::new(),
    };
    let mut agent = NodeAgent::new(tpm, client, node.clone());
    let image = fetch_and_measure(&lab, &mut agent);
    assert_eq!(
        agent.attest(&firmware.log, image.clone()).unwrap(),
        attested
    );

    // Every verdict in the boot timeline, in order.
    eventually(|| {
        let kinds = event_kinds(&lab, &site);
        if in_order(
            &kinds,
            &["enrolled", "attested", "refused", "refused", "attested"],
        ) {
            Ok(())
        } else {
            Err(format!("{kinds:?}"))
        }
    });
    let shown = ironrack_ok(&lab, &["nodes", "show", NODE_MAC, "--site", &site]);
    assert!(shown.contains("nonce-replayed"), "{shown}");
    assert!(shown.contains("last verdict: attested"), "{shown}");
    let listed = ironrack_ok(&lab, &["nodes", "list", "--site", &site]);
    let row = listed.lines().find(|l| l.contains(NODE_MAC)).unwrap();
    assert!(row.contains("attested"), "{listed}");

    // Revoked by the operator while the server runs: refused from then on.
    let said = ironrack_ok(&lab, &["nodes", "revoke", "gpu-r1-n3", "--site", &site]);
    assert!(said.contains("revoked"), "{said}");
    let _ = fetch_and_measure(&lab, &mut agent);
    let err = agent.attest(&firmware.log, image).unwrap_err();
    assert!(err.to_string().contains("node-revoked"), "{err}");
    let got = curl(&lab.ns, "GET", &nonce_url, None);
    assert_eq!(
        (got.status, refusal_code(&got)),
        (403, "node-revoked".into())
    );
    let listed = ironrack_ok(&lab, &["nodes", "list", "--site", &site]);
    let row = listed.lines().find(|l| l.contains(NODE_MAC)).unwrap();
    assert!(row.contains("revoked"), "{listed}");
    let kinds = eventually(|| {
        let kinds = event_kinds(&lab, &site);
        if in_order(&kinds, &["attested", "attested", "revoked", "refused"]) {
            Ok(kinds)
        } else {
            Err(format!("{kinds:?}"))
        }
    });
    assert!(
        kinds
            .iter()
            .rev()
            .take_while(|k| *k != "revoked")
            .all(|k| k == "refused"),
        "{kinds:?}"
    );

    // The four routes have their own metrics labels.
    let metrics = curl(&lab.ns, "GET", &format!("{BASE_URL}/metrics"), None);
    let metrics = String::from_utf8(metrics.body).unwrap();
    for series in [
        r#"route="attest-enroll",status="200""#,
        r#"route="attest-activate",status="200""#,
        r#"route="attest-nonce",status="403""#,
        r#"route="attest-quote",status="413""#,
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    assert!(lab.stop().success(), "{}", lab.log_text());
}
