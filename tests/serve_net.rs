//! `ironrack serve` as one process, with real clients in a network
//! namespace: TFTP (curl with blksize, atftp, tftp-hpa) serving the iPXE
//! binaries extracted from the real `ipxe` package, a udhcpc exchange
//! recorded in the timeline, the API and `ironrack nodes` showing a refused
//! image's reason, SIGHUP reloads (a bad site file refused, the old one
//! kept), and a clean stop on SIGTERM.

mod serve_support;

use std::process::Command;

use serve_support::*;

const NODE_MAC: &str = "52:54:00:12:00:01";

fn node_entry(image: &str) -> String {
    format!(
        "[[rack.node]]\nmac = \"{NODE_MAC}\"\nhostname = \"gpu-r1-n1\"\nip = \"198.18.0.11\"\nimage = \"{image}\"\n"
    )
}

/// The binaries of the package, unpacked by dpkg itself.
fn dpkg_unpacked(lab: &Lab) -> std::path::PathBuf {
    let root = lab.path("dpkg-x");
    let ok = Command::new("dpkg-deb")
        .arg("-x")
        .arg(ipxe_deb())
        .arg(&root)
        .status()
        .unwrap();
    assert!(ok.success());
    root.join("usr/lib/ipxe")
}

#[test]
fn tftp_through_serve_with_curl_atftp_and_tftp_hpa() {
    if skip("tftp_through_serve_with_curl_atftp_and_tftp_hpa") {
        return;
    }
    let mut lab = Lab::new();
    lab.write_site(&node_entry("gpu-node"));
    lab.serve();
    let reference = dpkg_unpacked(&lab);
    let out = lab.path("got");
    let out_s = out.to_str().unwrap();
    for file in ["undionly.kpxe", "snponly.efi", "ipxe.efi"] {
        let want = std::fs::read(reference.join(file)).unwrap();
        let url = format!("tftp://{SERVER_IP}/{file}");
        let clients: Vec<Vec<&str>> = vec![
            vec!["curl", "-sS", "--tftp-blksize", "1468", "-o", out_s, &url],
            vec!["curl", "-sS", "--tftp-blksize", "512", "-o", out_s, &url],
            vec![
                "atftp",
                "--option",
                "blksize 1468",
                "--option",
                "windowsize 8",
                "-g",
                "-r",
                file,
                "-l",
                out_s,
                SERVER_IP,
            ],
            vec!["tftp", SERVER_IP, "-m", "octet", "-c", "get", file, out_s],
        ];
        for client in clients {
            let _ = std::fs::remove_file(&out);
            let got = lab.in_ns(&client);
            assert!(
                got.status.success(),
                "{client:?}: {}",
                String::from_utf8_lossy(&got.stderr)
            );
            assert!(
                std::fs::read(&out).unwrap() == want,
                "{client:?}: {file} differs from the package's"
            );
        }
    }
    // The API records the same digests, and an Authenticode digest for EFI images.
    let api = lab.http_json("/api/images");
    let files = api["ipxe"]["files"].as_array().unwrap();
    let snp = files.iter().find(|f| f["name"] == "snponly.efi").unwrap();
    let want = std::fs::read(reference.join("snponly.efi")).unwrap();
    assert_eq!(snp["size"], want.len());
    assert_eq!(snp["authenticode-sha256"].as_str().map(str::len), Some(64));
    let kpxe = files.iter().find(|f| f["name"] == "undionly.kpxe").unwrap();
    assert!(kpxe["authenticode-sha256"].is_null());
    // Writes are refused.
    std::fs::write(lab.path("up"), b"x").unwrap();
    let put = lab.in_ns(&[
        "tftp",
        SERVER_IP,
        "-m",
        "octet",
        "-c",
        "put",
        lab.path("up").to_str().unwrap(),
        "up",
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&put.stdout),
        String::from_utf8_lossy(&put.stderr)
    );
    assert!(
        text.to_lowercase().contains("read-only") || !put.status.success(),
        "{text}"
    );
    assert!(lab.stop().success(), "{}", lab.log_text());
}

#[test]
fn udhcpc_exchange_through_serve_is_in_the_timeline() {
    if skip("udhcpc_exchange_through_serve_is_in_the_timeline") {
        return;
    }
    let mut lab = Lab::new();
    let site = lab.write_site(&node_entry("gpu-node"));
    lab.serve();
    let cli = lab.client(NODE_MAC);
    let got = in_ns(
        &cli,
        &[
            "busybox",
            "udhcpc",
            "-i",
            "cli0",
            "-n",
            "-q",
            "-f",
            "-t",
            "5",
            "-s",
            "/bin/true",
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&got.stdout),
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(got.status.success(), "{text}");
    assert!(text.contains("198.18.0.11"), "{text}");
    assert!(lab.stop().success());
    let show = lab.ironrack(&[
        "nodes",
        "show",
        "gpu-r1-n1",
        "--site",
        site.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let kinds: Vec<String> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        in_order(
            &kinds,
            &["dhcp-discover", "dhcp-offer", "dhcp-request", "dhcp-ack"]
        ),
        "{kinds:?}"
    );
    assert_eq!(v["node"]["state"], "dhcp");
}

#[test]
fn refused_image_reason_in_api_and_nodes_list_and_sighup_reloads() {
    if skip("refused_image_reason_in_api_and_nodes_list_and_sighup_reloads") {
        return;
    }
    let mut lab = Lab::new();
    let k = lab.path("vmlinuz");
    let i = lab.path("initrd.img");
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initrd").unwrap();
    let files = [("vmlinuz", k.as_path()), ("initrd.img", i.as_path())];
    let out = lab.path("out");
    let image = lab
        .world
        .image(&out, "gpu-node", 1, "console=ttyS0", &files)
        .unwrap();
    // Tamper with the signed manifest: the signature no longer matches.
    let manifest = std::fs::read_to_string(image.join("manifest.json")).unwrap();
    std::fs::write(
        image.join("manifest.json"),
        manifest.replace("console=ttyS0", "console=ttyS1"),
    )
    .unwrap();
    let site = lab.write_site(&node_entry("gpu-node"));
    lab.serve();

    let api = lab.http_json("/api/images");
    assert_eq!(api["images"].as_array().unwrap().len(), 0, "{api:#}");
    let reason = api["refused"][0]["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("manifest.json") && reason.contains("signature"),
        "{reason}"
    );
    let status = lab.in_ns(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{BASE_URL}/images/gpu-node/1/vmlinuz"),
    ]);
    assert_eq!(String::from_utf8_lossy(&status.stdout), "404");
    let script = lab.in_ns(&[
        "curl",
        "-sS",
        &format!("{BASE_URL}/boot/52-54-00-12-00-01.ipxe"),
    ]);
    let script = String::from_utf8_lossy(&script.stdout).into_owned();
    assert!(
        script.contains("not served") && !script.contains("kernel http"),
        "{script}"
    );

    let list = lab.ironrack(&["nodes", "list", "--site", site.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(text.starts_with("NODE"), "{text}");
    assert!(
        text.contains("gpu-r1-n1") && text.contains("refused"),
        "{text}"
    );
    assert!(
        text.contains("refused images (not served):") && text.contains("signature"),
        "{text}"
    );

    // A site file that does not parse: refused, the old one keeps serving.
    let good = std::fs::read_to_string(&site).unwrap();
    std::fs::write(&site, good.replace("[dhcp]", "[dhcp]\nbogus = 1")).unwrap();
    lab.signal(nix::sys::signal::Signal::SIGHUP);
    lab.wait_log("reload refused");
    assert!(lab.log_text().contains("bogus"), "{}", lab.log_text());
    assert_eq!(
        lab.http_json("/api/images")["refused"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A good image appears on the next reload.
    std::fs::write(&site, &good).unwrap();
    lab.world
        .image(&out, "gpu-node", 2, "console=ttyS0", &files)
        .unwrap();
    lab.signal(nix::sys::signal::Signal::SIGHUP);
    lab.wait_log("reload complete");
    let api = lab.http_json("/api/images");
    assert_eq!(api["images"][0]["version"], 2, "{api:#}");
    let script = lab.in_ns(&[
        "curl",
        "-sS",
        &format!("{BASE_URL}/boot/52-54-00-12-00-01.ipxe"),
    ]);
    assert!(String::from_utf8_lossy(&script.stdout).contains("images/gpu-node/2/vmlinuz"));
    assert!(lab.stop().success(), "{}", lab.log_text());
    assert!(lab.log_text().contains("ironrack serve stopped"));
}

#[test]
fn an_unknown_node_is_pending_until_approved_on_the_command_line() {
    if skip("an_unknown_node_is_pending_until_approved_on_the_command_line") {
        return;
    }
    let mut lab = Lab::new();
    let k = lab.path("vmlinuz");
    let i = lab.path("initrd.img");
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initrd").unwrap();
    lab.world
        .image(
            &lab.path("out"),
            "gpu-node",
            1,
            "console=ttyS0",
            &[("vmlinuz", k.as_path()), ("initrd.img", i.as_path())],
        )
        .unwrap();
    let site = lab.write_site(&node_entry("gpu-node"));
    let site = site.to_str().unwrap();
    lab.serve();
    let stranger = "52:54:00:12:00:99";
    let url = format!("{BASE_URL}/boot/52-54-00-12-00-99.ipxe");
    let script =
        |lab: &Lab| String::from_utf8_lossy(&lab.in_ns(&["curl", "-sS", &url]).stdout).into_owned();
    let before = script(&lab);
    assert!(
        before.contains("pending") && !before.contains("kernel http"),
        "{before}"
    );

    // While the server runs: the CLI writes the shared state database.
    let approve = lab.ironrack(&[
        "nodes", "approve", stranger, "--image", "gpu-node", "--site", site,
    ]);
    assert!(
        approve.status.success(),
        "{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    let after = script(&lab);
    assert!(
        after.contains("kernel http://198.18.0.1:8080/images/gpu-node/1/vmlinuz"),
        "{after}"
    );

    // The server commits events in batches, a moment after the reply.
    let text = eventually(|| {
        let list = lab.ironrack(&["nodes", "list", "--site", site]);
        let text = String::from_utf8_lossy(&list.stdout).into_owned();
        let row = text
            .lines()
            .find(|l| l.contains(stranger))
            .unwrap_or_default();
        if row.contains("ipxe") && row.contains("script") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(text.contains("gpu-r1-n1"), "{text}");
    let show = lab.ironrack(&["nodes", "show", stranger, "--site", site]);
    let text = String::from_utf8_lossy(&show.stdout).into_owned();
    let kinds: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(kinds, ["pending", "approved", "script"], "{text}");
    assert!(
        text.contains("approved by the operator to boot gpu-node"),
        "{text}"
    );

    // A node nobody knows cannot be approved by name.
    let bad = lab.ironrack(&["nodes", "approve", "no-such-host", "--site", site]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no-such-host"));
    assert!(lab.stop().success(), "{}", lab.log_text());
}
