//! A small site for each test: a signed image (fresh keys, a trust file, a
//! manifest with predicted measurements), a simulated firmware boot into a
//! real swtpm, the service, and the agent.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ironrack_keys::trust::{Delegation, Scope};
use ironrack_keys::{Artifact, SecretKey, SignedManifest, Timestamp, Trust, TrustFile};
use ironrack_pxe::agent::{NodeAgent, fetch_verified};
use ironrack_pxe::attest::ek::EkTrust;
use ironrack_pxe::attest::eventlog::{
    AlgorithmId, DevicePath, Digest, EventLog, EventLogBuilder, EventType, ImageLoadEvent,
};
use ironrack_pxe::attest::image::ReleasedImage;
use ironrack_pxe::attest::protocol::{
    AttestClient, ImageRef, NodeId, QuoteSubmission, Request, Response,
};
use ironrack_pxe::attest::service::{
    AttestConfig, AttestService, AttestStore, ImageSet, MemoryStore,
};
use ironrack_pxe::attest::tpm::constants::alg;
use ironrack_pxe::attest::tpm::{SwtpmSocket, Tpm};
use sha2::{Digest as _, Sha256};

use crate::swtpm::{Swtpm, local_ca_pem};

pub const IMAGE: &str = "gpu-node";
pub const ROOTFS: &str = "rootfs.squashfs";

/// The operator's EK roots: swtpm's local CA.
pub fn local_ca_trust() -> EkTrust {
    let (root, intermediate) = local_ca_pem();
    let mut trust = EkTrust::new();
    trust.add_roots_pem(&root).unwrap();
    trust.add_intermediates_pem(&intermediate).unwrap();
    trust
}

/// What the simulated firmware measures: a few PCR 0-7 events, the UKI
/// started in PCR 4 (its Authenticode digest), systemd-stub's sections in
/// PCR 11.
pub struct Firmware {
    pub uki_authenticode: [u8; 32],
    pub log: Vec<u8>,
}

impl Firmware {
    pub fn new() -> Firmware {
        Self::with_uki(Sha256::digest(b"node.efi authenticode").into())
    }

    pub fn with_uki(uki_authenticode: [u8; 32]) -> Firmware {
        Self::build(uki_authenticode, None)
    }

    /// A boot whose UKI systemd-stub started with `load_options` (what a
    /// server's iPXE script passes), measured into PCR 12 as the stub does.
    #[allow(dead_code)] // used by tests/serve_attest.rs, not by attest_flow
    pub fn served(load_options: &str) -> Firmware {
        Self::build(
            Sha256::digest(b"node.efi authenticode").into(),
            Some(load_options),
        )
    }

    /// A legacy BIOS boot as SeaBIOS measures it: itself, the separators,
    /// the INT 19h hand-over in PCR 4, then nothing (iPXE starts the kernel
    /// unmeasured; no stub fills PCR 11 or 12).
    pub fn bios() -> Firmware {
        let mut b = EventLogBuilder::sha256();
        b.event(0, EventType::S_CRTM_VERSION, b"SeaBIOS".to_vec());
        for pcr in 0..8 {
            b.separator(pcr);
        }
        b.measure(
            4,
            EventType::ACTION,
            b"Calling INT 19h",
            b"Calling INT 19h".to_vec(),
        );
        Firmware {
            uki_authenticode: Sha256::digest(b"node.efi authenticode").into(),
            log: b.to_bytes().unwrap(),
        }
    }

    fn build(uki_authenticode: [u8; 32], load_options: Option<&str>) -> Firmware {
        let mut b = EventLogBuilder::sha256();
        b.event(0, EventType::S_CRTM_VERSION, vec![0, 0]);
        for pcr in 0..8 {
            b.separator(pcr);
        }
        b.efi_action(4, "Calling EFI Application from Boot Option");
        let image = ImageLoadEvent {
            location: 0x7e00_0000,
            length: 15_302_497,
            link_time_address: 0,
            device_path: DevicePath::default(),
        };
        let digest = Digest::from_slice(AlgorithmId::SHA256, &uki_authenticode).unwrap();
        b.boot_application(&[digest], &image);
        for (name, content) in [(".linux", &b"kernel"[..]), (".cmdline", b"console=ttyS0")] {
            let mut label = name.as_bytes().to_vec();
            label.push(0);
            b.measure(11, EventType::IPL, &label, label.clone());
            b.measure(11, EventType::IPL, content, name.as_bytes());
        }
        if let Some(options) = load_options {
            let measured: Vec<u8> = options
                .encode_utf16()
                .chain([0])
                .flat_map(u16::to_le_bytes)
                .collect();
            b.measure(12, EventType::IPL, &measured, measured.clone());
        }
        Firmware {
            uki_authenticode,
            log: b.to_bytes().unwrap(),
        }
    }

    /// The real OVMF + iPXE + UKI boot of the shared fixtures, with the
    /// UKI's Authenticode digest from the fixture index.
    pub fn real() -> Firmware {
        use ironrack_pxe::testkit::fixtures;
        let digest = fixtures::index_rows()
            .into_iter()
            .find(|(k, _)| k.starts_with("node.efi"))
            .map(|(_, v)| v)
            .expect("node.efi row in INDEX.md");
        Firmware {
            uki_authenticode: ironrack_pxe::attest::image::hex32(&digest).unwrap(),
            log: std::fs::read(fixtures::eventlog_path()).unwrap(),
        }
    }

    /// Extends the TPM as firmware would have, event by event.
    pub fn boot(&self, tpm: &mut Tpm<SwtpmSocket>) {
        extend_log(tpm, &self.log);
    }

    /// PCR 11 after the boot.
    pub fn pcr11(&self) -> [u8; 32] {
        let banks = EventLog::parse(&self.log).unwrap().replay().unwrap();
        banks
            .sha256()
            .unwrap()
            .value(11)
            .unwrap()
            .as_bytes()
            .try_into()
            .unwrap()
    }
}

/// Replays `log` into the TPM's SHA-256 bank.
pub fn extend_log(tpm: &mut Tpm<SwtpmSocket>, log: &[u8]) {
    let log = EventLog::parse(log).unwrap();
    for e in log.events.iter().filter(|e| e.extends()) {
        let d = e.digest(AlgorithmId::SHA256).unwrap();
        tpm.pcr_extend(e.pcr, &[(alg::SHA256, d.as_bytes())])
            .unwrap();
    }
}

/// A signed image: trust, manifest, signature, rootfs bytes.
pub struct SignedImage {
    pub trust: Trust,
    /// The installed trust file, its root key and the signer's id (for a
    /// next version that revokes the signer).
    pub trust_file: TrustFile,
    pub root: SecretKey,
    pub signer: ironrack_keys::KeyId,
    pub manifest: Vec<u8>,
    pub signature: Vec<u8>,
    pub rootfs: Vec<u8>,
}

impl SignedImage {
    pub fn new(firmware: &Firmware, version: u64) -> SignedImage {
        let dir = tempfile::tempdir().unwrap();
        let rootfs: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 253) as u8).collect();
        std::fs::write(dir.path().join(ROOTFS), &rootfs).unwrap();
        std::fs::write(dir.path().join("node.efi"), b"MZ not really a UKI").unwrap();
        let artifacts = ["node.efi", ROOTFS]
            .iter()
            .map(|n| Artifact::from_file(dir.path(), n).unwrap())
            .collect();
        let payload = serde_json::json!({
            "packages": 3,
            "measurements": {
                "uki": "node.efi",
                "uki-authenticode": hex::encode(firmware.uki_authenticode),
                "pcr11": hex::encode(firmware.pcr11()),
                "agent-pcr": 15,
            },
        });
        let expires = Timestamp::now().plus_days(30);
        let manifest = SignedManifest::new(IMAGE, "stable", version, expires, artifacts, payload);
        let root = SecretKey::generate().unwrap();
        let signer = SecretKey::generate().unwrap();
        let mut file = TrustFile::new(vec![root.public_key()], 1, expires).unwrap();
        file.signed
            .add_signer(Delegation {
                name: "ci".into(),
                id: signer.key_id(),
                public: signer.public_key(),
                expires,
                scope: ["image:gpu-*", "channel:stable"]
                    .iter()
                    .map(|s| s.parse::<Scope>().unwrap())
                    .collect(),
            })
            .unwrap();
        file.sign(&root).unwrap();
        let trust = Trust::from_installed(&file.to_bytes().unwrap(), &[]).unwrap();
        let (manifest, sig) = ironrack_keys::sign_manifest(&signer, &manifest).unwrap();
        SignedImage {
            trust,
            signer: signer.key_id(),
            trust_file: file,
            root,
            manifest,
            signature: sig.to_file_text().into_bytes(),
            rootfs,
        }
    }

    pub fn released(&self) -> ReleasedImage {
        ReleasedImage::verify(
            &self.trust,
            &self.manifest,
            &self.signature,
            None,
            Timestamp::now(),
        )
        .unwrap()
    }

    pub fn image_ref(&self) -> ImageRef {
        let r = self.released();
        ImageRef {
            name: r.name,
            version: r.version,
        }
    }
}

/// The service with a clock tests can move forward.
pub struct Site {
    pub firmware: Firmware,
    pub image: SignedImage,
    pub service: AttestService,
    pub skew: Arc<AtomicU64>,
}

impl Site {
    pub fn new(ek_trust: EkTrust) -> Site {
        Self::with_store(ek_trust, Arc::new(MemoryStore::new()))
    }

    pub fn with_store(ek_trust: EkTrust, store: Arc<dyn AttestStore>) -> Site {
        let firmware = Firmware::new();
        let image = SignedImage::new(&firmware, 7);
        Self::assemble(firmware, image, ek_trust, store)
    }

    /// A site that keeps per-node secrets in `dir`.
    pub fn with_secrets(ek_trust: EkTrust, dir: &std::path::Path) -> Site {
        let mut config = AttestConfig::new(ek_trust);
        config.secrets = Some(dir.to_owned());
        let firmware = Firmware::new();
        let image = SignedImage::new(&firmware, 7);
        Self::configured(firmware, image, config, Arc::new(MemoryStore::new()))
    }

    pub fn assemble(
        firmware: Firmware,
        image: SignedImage,
        ek_trust: EkTrust,
        store: Arc<dyn AttestStore>,
    ) -> Site {
        Self::configured(firmware, image, AttestConfig::new(ek_trust), store)
    }

    fn configured(
        firmware: Firmware,
        image: SignedImage,
        config: AttestConfig,
        store: Arc<dyn AttestStore>,
    ) -> Site {
        let images = Arc::new(ImageSet::new());
        images.insert(image.released());
        let skew = Arc::new(AtomicU64::new(0));
        let clock = skew.clone();
        let service = AttestService::new(store, images, config).with_clock(move || {
            SystemTime::now() + Duration::from_secs(clock.load(Ordering::Relaxed))
        });
        Site {
            firmware,
            image,
            service,
            skew,
        }
    }

    /// A started swtpm that went through the simulated firmware boot.
    pub fn booted_tpm(&self) -> (Swtpm, Tpm<SwtpmSocket>) {
        let (sw, mut tpm) = Swtpm::started();
        self.firmware.boot(&mut tpm);
        (sw, tpm)
    }
}

/// A client that lets a test rewrite requests before they reach the
/// service and keeps a copy of every quote submission.
pub struct Tamper<'a> {
    pub service: &'a AttestService,
    pub edit: Box<dyn FnMut(&mut Request) + 'a>,
    pub submissions: Arc<Mutex<Vec<QuoteSubmission>>>,
}

impl<'a> Tamper<'a> {
    pub fn new(service: &'a AttestService, edit: impl FnMut(&mut Request) + 'a) -> Self {
        Tamper {
            service,
            edit: Box::new(edit),
            submissions: Arc::default(),
        }
    }
}

impl AttestClient for Tamper<'_> {
    fn call(
        &mut self,
        request: &Request,
    ) -> Result<Response, Box<dyn std::error::Error + Send + Sync>> {
        let mut request = request.clone();
        (self.edit)(&mut request);
        if let Request::Quote(q) = &request {
            self.submissions.lock().unwrap().push((**q).clone());
        }
        Ok(self.service.handle(&request)?)
    }
}

pub fn node(id: &str) -> NodeId {
    NodeId::new(id).unwrap()
}

/// The agent's boot after enrollment: fetch the rootfs (verified), measure
/// the image, attest.
pub fn measured_boot<C: AttestClient>(
    agent: &mut NodeAgent<SwtpmSocket, C>,
    site: &Site,
    dir: &Path,
) -> Result<ironrack_pxe::attest::protocol::Verdict, ironrack_pxe::agent::AgentError> {
    let image = ReleasedImage::verify(
        &site.image.trust,
        &site.image.manifest,
        &site.image.signature,
        None,
        Timestamp::now(),
    )?;
    fetch_verified(
        &site.image.rootfs[..],
        &image.rootfs_name,
        image.rootfs_size,
        image.rootfs_sha256,
        &dir.join(&image.rootfs_name),
    )?;
    agent.measure_image(&image)?;
    agent.attest(&site.firmware.log, site.image.image_ref())
}
