//! `ironrack serve`: one process running DHCP, TFTP and HTTP for a site,
//! over one state database, reloading on SIGHUP and stopping cleanly on
//! SIGTERM or SIGINT.
//!
//! A reload re-reads site.toml, the trust root, every image (re-verified;
//! unchanged artifacts are not hashed again) and the iPXE package, and
//! hands the result to each server without dropping anything in flight:
//! DHCP takes the new site from a watch channel at its next request, TFTP
//! swaps its file source (transfers keep the file they opened), HTTP
//! swaps its state `Arc` (responses keep the state they started with). A
//! site file that does not load is refused: the error is logged and the
//! old configuration keeps serving. Listen addresses and interfaces are
//! bound at start; a reload that changes them says a restart is needed.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ironrack_keys::{Timestamp, Trust};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::attest::gpu::GpuProfile;
use crate::attest::image::ReleasedImage;
use crate::attest::protocol::NodeId;
use crate::attest::service::{
    AttestConfig, AttestService, AttestStore, AttestStoreError, ImageCatalog, SqliteAttestStore,
};
use crate::attest::service::{BootChain, NodePolicy};
use crate::images::{ImageStore, IpxeBinaries, IpxeError, LoadOptions};
use crate::inventory::Inventory;
use crate::net::dhcp::{DhcpError, DhcpServer};
use crate::net::http::{HttpError, HttpHandle, HttpServer, HttpState};
use crate::net::tftp::{
    DirSource, FileSource, OpenError, SafeName, SourceContent, TftpConfig, TftpError, TftpHandle,
    TftpServer,
};
use crate::site::{Site, SiteError};
use crate::store::{ImageStatus, SqliteStore, Store, StoreError};

/// Why `serve` could not start (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The site file.
    #[error(transparent)]
    Site(#[from] SiteError),
    /// The state database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The attestation tables of the state database.
    #[error(transparent)]
    AttestStore(#[from] AttestStoreError),
    /// Its directory could not be made.
    #[error("creating the state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The iPXE package.
    #[error(transparent)]
    Ipxe(#[from] IpxeError),
    /// DHCP.
    #[error(transparent)]
    Dhcp(#[from] DhcpError),
    /// TFTP.
    #[error(transparent)]
    Tftp(#[from] TftpError),
    /// HTTP.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The runtime or a signal handler.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    /// A server (DHCP, TFTP or HTTP) returned while it should still run.
    #[error("a server stopped on its own; stopping the others")]
    ServerEnded,
    /// A server or loading task panicked or was cancelled.
    #[error("a server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What TFTP serves: the iPXE binaries from the package (in memory), then
/// the `[tftp] root` directory when it exists.
#[derive(Debug)]
pub struct ServeSource {
    ipxe: Arc<IpxeBinaries>,
    dir: Option<DirSource>,
}

impl FileSource for ServeSource {
    fn open(&self, name: &SafeName) -> Result<SourceContent, OpenError> {
        if let Some(binary) = self.ipxe.get(name.as_str()) {
            return Ok(SourceContent::Bytes(Arc::from(&binary.bytes[..])));
        }
        match &self.dir {
            Some(dir) => dir.open(name),
            None => Err(OpenError::NotFound { name: name.clone() }),
        }
    }
}

/// The attestation service's view of the image store: the verified
/// manifests of the images HTTP serves, swapped with them on reload, so a
/// node is judged against exactly the image it could have fetched.
#[derive(Debug)]
struct ServedImages(std::sync::RwLock<Arc<ImageStore>>);

impl ServedImages {
    fn replace(&self, images: Arc<ImageStore>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = images;
    }
}

impl ImageCatalog for ServedImages {
    fn image(&self, name: &str, version: u64) -> Option<Arc<ReleasedImage>> {
        let images = Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()));
        images.get(name, version)?.released.clone().ok()
    }
}

/// The attestation judge's view of what this server set up: the site's
/// pins and profiles, the command line its scripts pass each image, the
/// iPXE binaries it serves. Made anew with every (re)load.
#[derive(Debug)]
struct SitePolicy {
    site: Arc<Site>,
    images: Arc<ImageStore>,
    loaders: Vec<[u8; 32]>,
}

impl SitePolicy {
    fn new(site: Arc<Site>, images: Arc<ImageStore>, ipxe: &IpxeBinaries) -> Self {
        let loaders = ipxe
            .files
            .values()
            .filter_map(|b| b.authenticode_sha256.as_deref())
            .filter_map(crate::attest::image::hex32)
            .collect();
        SitePolicy {
            site,
            images,
            loaders,
        }
    }
}

impl NodePolicy for SitePolicy {
    fn pinned_version(&self, node: &NodeId, image: &str) -> Option<u64> {
        self.site.pinned_version(node.as_str(), image)
    }
    fn gpu_profile(&self, node: &NodeId) -> Option<GpuProfile> {
        self.site.gpu_profile(node.as_str())
    }
    fn secure_boot(&self, node: &NodeId) -> Option<bool> {
        self.site.profile_of(node.as_str())?.secure_boot
    }
    fn boot_chain(&self, node: &NodeId) -> BootChain {
        self.site
            .profile_of(node.as_str())
            .map(|p| p.boot_chain)
            .unwrap_or_default()
    }
    fn load_options(&self, _: &NodeId, image: &ReleasedImage) -> Option<String> {
        let served = self.images.get(&image.name, image.version)?;
        Some(crate::net::http::script::uki_load_options(
            served,
            self.site.http_base(),
        ))
    }
    fn boot_loaders(&self) -> Option<Vec<[u8; 32]>> {
        // Without an iPXE package, a node may come by UEFI HTTP boot or
        // another loader: PCR 4 is then checked for the UKI only.
        (!self.loaders.is_empty()).then(|| self.loaders.clone())
    }
}

/// Everything a (re)load produces.
struct World {
    site: Arc<Site>,
    images: Arc<ImageStore>,
    ipxe: Arc<IpxeBinaries>,
}

fn load_trust(site: &Site) -> Result<Trust, String> {
    let path = site.resolve(&site.config.images.trust_root);
    Trust::load(&path, &[]).map_err(|e| format!("{}: {e}", path.display()))
}

fn load_ipxe(
    site: &Site,
    previous: Option<&Arc<IpxeBinaries>>,
) -> Result<Arc<IpxeBinaries>, IpxeError> {
    let Some(deb) = &site.config.boot.ipxe_deb else {
        tracing::warn!("no [boot] ipxe-deb in the site: no iPXE binary will be served");
        return Ok(Arc::new(IpxeBinaries::default()));
    };
    let path = site.resolve(deb);
    if let Some(old) = previous.filter(|old| old.deb == path) {
        return Ok(Arc::clone(old));
    }
    Ok(Arc::new(IpxeBinaries::from_deb(&path)?))
}

/// Loads images and iPXE binaries for `site` (blocking: hashes artifacts).
fn load_world(site: Arc<Site>, previous: Option<&World>) -> Result<World, IpxeError> {
    let ipxe = load_ipxe(&site, previous.map(|w| &w.ipxe))?;
    let trust = load_trust(&site);
    if let Err(e) = &trust {
        tracing::error!(error = %e, "trust root unusable: every image is refused");
    }
    let dirs: Vec<PathBuf> = site
        .config
        .images
        .dirs
        .iter()
        .map(|d| site.resolve(d))
        .collect();
    let images = ImageStore::load(
        &dirs,
        &LoadOptions {
            trust: trust.as_ref().map_err(Clone::clone),
            now: Timestamp::now(),
            memory_budget: site.config.http.memory_cache_bytes,
            previous: previous.map(|w| &*w.images),
        },
    );
    Ok(World {
        site,
        images: Arc::new(images),
        ipxe,
    })
}

fn image_status(images: &ImageStore) -> Vec<ImageStatus> {
    let verified = images.images().map(|i| ImageStatus {
        name: i.name.clone(),
        version: Some(i.version),
        dir: i.dir.display().to_string(),
        status: "verified".into(),
        reason: None,
    });
    let refused = images.refused().iter().map(|r| ImageStatus {
        name: r.name.clone(),
        version: r.version,
        dir: r.dir.display().to_string(),
        status: "refused".into(),
        reason: Some(r.reason.clone()),
    });
    verified.chain(refused).collect()
}

fn tftp_addrs(site: &Site) -> Vec<SocketAddr> {
    let listen = site.config.tftp.listen;
    if !listen.ip().is_unspecified() {
        return vec![listen];
    }
    site.config
        .interfaces
        .iter()
        .map(|i| SocketAddr::new(IpAddr::V4(i.address.addr), listen.port()))
        .collect()
}

fn http_addrs(site: &Site) -> Vec<SocketAddr> {
    if !site.config.http.listen.is_empty() {
        return site.config.http.listen.clone();
    }
    site.config
        .interfaces
        .iter()
        .map(|i| SocketAddr::new(IpAddr::V4(i.address.addr), site.http_base_port()))
        .collect()
}

fn tftp_source(site: &Site, ipxe: &Arc<IpxeBinaries>) -> Arc<dyn FileSource> {
    let root = site.resolve(&site.config.tftp.root);
    let dir = root.is_dir().then(|| DirSource::open(&root)).and_then(|r| {
        r.map_err(|e| tracing::warn!(root = %root.display(), error = %e, "TFTP root unreadable; serving iPXE binaries only"))
            .ok()
    });
    Arc::new(ServeSource {
        ipxe: Arc::clone(ipxe),
        dir,
    })
}

/// Runs the service for the site at `site_path` until SIGTERM or SIGINT,
/// on a runtime of its own (the CLI's entry point).
pub fn run(site_path: &Path) -> Result<(), ServeError> {
    // Four workers per CPU: TFTP and HTTP work is mostly kernel time in
    // send/recv, and on a host busy with other work more runnable workers
    // keep a storm's ready transfers moving (measured with the TFTP engine:
    // pxe/examples/tftpd.rs). Idle workers sleep.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4 * cpus)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(ServeError::Runtime)?;
        let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Runtime)?;
        let hup = signal(SignalKind::hangup()).map_err(ServeError::Runtime)?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => tracing::warn!("SIGTERM: stopping"),
                _ = int.recv() => tracing::warn!("SIGINT: stopping"),
            }
        };
        serve(site_path, hup, stop).await
    })
}

/// Something that yields once per reload request (SIGHUP in production).
pub trait ReloadSignal: Send {
    /// Waits for the next reload request; `None` when there will be none.
    fn next(&mut self) -> impl Future<Output = Option<()>> + Send;
}

impl ReloadSignal for tokio::signal::unix::Signal {
    fn next(&mut self) -> impl Future<Output = Option<()>> + Send {
        self.recv()
    }
}

impl ReloadSignal for tokio::sync::mpsc::Receiver<()> {
    fn next(&mut self) -> impl Future<Output = Option<()>> + Send {
        self.recv()
    }
}

struct Running {
    site_path: PathBuf,
    world: World,
    store: Arc<dyn Store>,
    inventory: Arc<Inventory>,
    site_tx: watch::Sender<Arc<Site>>,
    tftp: Vec<TftpHandle>,
    http: HttpHandle,
    attest: Attest,
}

/// What every attestation service of this process shares: the store and
/// the image catalog. A reload makes a new service only for new settings.
struct Attest {
    store: Arc<SqliteAttestStore>,
    catalog: Arc<ServedImages>,
}

impl Attest {
    fn service(&self, config: AttestConfig, world: &World) -> Arc<AttestService> {
        tracing::info!(
            ek_roots = config.ek_trust.root_count(),
            nonce_seconds = config.nonce_ttl,
            "attestation service on /attest/*"
        );
        Arc::new(
            AttestService::new(
                Arc::clone(&self.store) as Arc<dyn AttestStore>,
                Arc::clone(&self.catalog) as Arc<dyn ImageCatalog>,
                config,
            )
            .with_policy(Arc::new(SitePolicy::new(
                Arc::clone(&world.site),
                Arc::clone(&world.images),
                &world.ipxe,
            ))),
        )
    }
}

/// Serves the site at `site_path`, reloading on each `reload`, until
/// `stop` completes.
pub async fn serve(
    site_path: &Path,
    mut reload: impl ReloadSignal,
    stop: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let site = Arc::new(Site::load(site_path)?);
    let db = site.resolve(&site.config.server.database);
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ServeError::StateDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db)?);
    // Same file, own tables: one database to back up, and `ironrack nodes`
    // reads the verdicts beside the boot timelines.
    let attest_store = Arc::new(SqliteAttestStore::open(&db)?);
    let attest_config = site.attest_config()?;
    let world = {
        let site = Arc::clone(&site);
        tokio::task::spawn_blocking(move || load_world(site, None))
            .await
            .map_err(ServeError::Task)??
    };
    store
        .inventory()
        .replace_image_status(&image_status(&world.images))?;
    let inventory = Inventory::start(Arc::clone(&store), Arc::clone(&site));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks: JoinSet<Result<(), ServeError>> = JoinSet::new();

    let (site_tx, site_rx) = watch::channel(Arc::clone(&site));
    let dhcp = DhcpServer::new(site_rx, Arc::clone(&store), inventory.clone())
        .bind()
        .await?;
    tasks.spawn({
        let s = stopped(stop_rx.clone());
        async move { dhcp.run(s).await.map_err(ServeError::from) }
    });

    let mut tftp = Vec::new();
    for addr in tftp_addrs(&site) {
        let config = TftpConfig {
            listen: addr,
            ..site.config.tftp.clone()
        };
        let server =
            TftpServer::bind(config, tftp_source(&site, &world.ipxe), inventory.clone()).await?;
        tftp.push(server.handle());
        let s = stopped(stop_rx.clone());
        tasks.spawn(async move { server.run(s).await.map_err(ServeError::from) });
    }

    let state = HttpState {
        site: Arc::clone(&site),
        images: Arc::clone(&world.images),
        ipxe: Arc::clone(&world.ipxe),
    };
    let http = HttpServer::bind(
        &http_addrs(&site),
        state,
        Arc::clone(&store),
        Arc::clone(&inventory),
    )
    .await?;
    let catalog = Arc::new(ServedImages(std::sync::RwLock::new(Arc::clone(
        &world.images,
    ))));
    let attest = Attest {
        store: attest_store,
        catalog,
    };
    let http_handle = http.handle();
    http_handle.set_attest(attest.service(attest_config, &world));
    tracing::warn!(
        site = %site_path.display(), http = ?http.local_addrs(), tftp = ?tftp_addrs(&site),
        images = world.images.images().count(), refused = world.images.refused().len(),
        ipxe = world.ipxe.files.len(), "ironrack serve ready"
    );
    tasks.spawn({
        let s = stopped(stop_rx.clone());
        async move { http.run(s).await.map_err(ServeError::from) }
    });

    let mut running = Running {
        site_path: site_path.to_owned(),
        world,
        store,
        inventory,
        site_tx,
        tftp,
        http: http_handle,
        attest,
    };
    tokio::pin!(stop);
    let mut failed = None;
    let mut reloads_open = true;
    loop {
        tokio::select! {
            () = &mut stop => break,
            signal = reload.next(), if reloads_open => match signal {
                Some(()) => running.reload().await,
                None => reloads_open = false,
            },
            Some(ended) = tasks.join_next() => {
                // A server ending on its own is a failure: stop the rest.
                let err = match ended {
                    Ok(Ok(())) => ServeError::ServerEnded,
                    Ok(Err(e)) => e,
                    Err(e) => ServeError::Task(e),
                };
                tracing::error!(error = %err, "server failed; stopping");
                failed = Some(err);
                break;
            }
        }
    }
    let _ = stop_tx.send(true);
    while let Some(ended) = tasks.join_next().await {
        if let Ok(Err(e)) = ended {
            tracing::error!(error = %e, "server stopped with an error");
        }
    }
    running.inventory.flush();
    tracing::warn!("ironrack serve stopped");
    failed.map_or(Ok(()), Err)
}

impl Running {
    async fn reload(&mut self) {
        tracing::warn!(site = %self.site_path.display(), "reload requested");
        let site = match Site::load(&self.site_path) {
            Ok(site) => Arc::new(site),
            Err(e) => {
                tracing::error!(error = %e, "reload refused: the new site file does not load; the old configuration keeps serving");
                return;
            }
        };
        if tftp_addrs(&site) != tftp_addrs(&self.world.site)
            || http_addrs(&site) != http_addrs(&self.world.site)
        {
            tracing::warn!("listen addresses changed: they take effect after a restart");
        }
        let attest_config = match site.attest_config() {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(error = %e, "reload refused: [attest] does not load; the old configuration keeps serving");
                return;
            }
        };
        let previous = World {
            site: Arc::clone(&self.world.site),
            images: Arc::clone(&self.world.images),
            ipxe: Arc::clone(&self.world.ipxe),
        };
        let loaded = {
            let site = Arc::clone(&site);
            tokio::task::spawn_blocking(move || load_world(site, Some(&previous))).await
        };
        let world = match loaded {
            Ok(Ok(world)) => world,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reload refused: iPXE package unusable; the old configuration keeps serving");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "reload task failed; the old configuration keeps serving");
                return;
            }
        };
        if let Err(e) = self
            .store
            .inventory()
            .replace_image_status(&image_status(&world.images))
        {
            tracing::error!(error = %e, "recording image status after reload");
        }
        for handle in &self.tftp {
            handle.replace_source(tftp_source(&site, &world.ipxe));
        }
        self.http.replace_state(HttpState {
            site: Arc::clone(&site),
            images: Arc::clone(&world.images),
            ipxe: Arc::clone(&world.ipxe),
        });
        self.attest.catalog.replace(Arc::clone(&world.images));
        // EK roots are re-read: an operator adding a vendor CA needs no restart.
        self.http
            .set_attest(self.attest.service(attest_config, &world));
        self.inventory.set_site(Arc::clone(&site));
        let _ = self.site_tx.send(Arc::clone(&site));
        tracing::warn!(
            images = world.images.images().count(),
            refused = world.images.refused().len(),
            "reload complete"
        );
        self.world = world;
    }
}
