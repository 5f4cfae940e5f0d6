//! The one orchestrator of a build: configuration → resolution (or a lockfile) → verified
//! packages → per-architecture filesystem → deterministic layer → OCI config, manifests and
//! index → an OCI layout (and, when asked, a push) → a [`BuildResult`].
//!
//! Each step lives in its own module; this file only sequences them and carries data between
//! them. A failure at any step leaves nothing at the output and pushes nothing.
//!
//! Packages are decompressed once, while the fetcher verifies them, into spools that the
//! install step reads. A finished layer is kept in the layer cache under a key covering every
//! input of the layer, so that an unchanged rebuild verifies its packages but installs and
//! compresses nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use securebuild_crds::image_config::{Architecture, ImageConfiguration, LayerPlan};

use crate::apk::index::write_record;
use crate::apk::package::{self, PackageFetcher, PackageRef, VerifiedPackage};
use crate::apk::repository;
use crate::error::{Error, Result};
use crate::image::certificates::{self, ProviderPackage};
use crate::image::config::{self as image_config, ConfigInput};
use crate::image::entry::EntryKind;
use crate::image::install::Installed;
use crate::image::install::{self, InstallLimits, SpooledPackage};
use crate::image::layer::Compression;
use crate::image::layers::{self, LayerBlob, LayerKind, LayerPackage};
use crate::image::layout::{self, Descriptor, ImageIndex, ImageManifest, LayoutWriter, Platform};
use crate::image::os_release::{self, ReleaseInfo};
use crate::image::write::{CachedLayer, LayerCache, LayerKeyBuilder};
use crate::image::{accounts, apkdb, busybox, ldso, paths, runtime_keyring, services, write};
use crate::lock::{
    Lock, LockConfig, LockContents, LockKeyring, LockPackage, LockRange, LockRepository,
};
use crate::resolve::{self, ArchResolution, Resolution, ResolveRequest};
use crate::result::{BuildResult, ImageResult, PlatformResult};
use crate::tags;

/// Everything a build needs besides the configuration.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The configuration file, when there is one: relative repository and key paths are
    /// relative to its directory, and the lockfile records its name and checksum.
    pub config_path: Option<PathBuf>,
    /// Build only these architectures (they must be among the configuration's).
    pub archs: Vec<Architecture>,
    /// Build exactly the packages of this lock.
    pub lockfile: Option<Lock>,
    /// Cache root for indexes, keys, packages and finished layers.
    pub cache_dir: PathBuf,
    /// Where spools, layers and the staging layout are written (the system temp directory
    /// when `None`); put it on the output's filesystem so the layout moves into place by rename.
    pub work_dir: Option<PathBuf>,
    /// Accept unsigned indexes and unknown keys.
    pub allow_untrusted: bool,
    /// Layer compression.
    pub compression: Compression,
    /// Fixed creation time (seconds since the epoch); default: the newest package build time.
    pub source_date_epoch: Option<i64>,
    /// Size and count limits.
    pub limits: InstallLimits,
    /// Tag templates, expanded over the resolved versions.
    pub tags: Vec<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            config_path: None,
            archs: Vec::new(),
            lockfile: None,
            cache_dir: default_cache_dir(),
            work_dir: None,
            allow_untrusted: false,
            compression: Compression::default(),
            source_date_epoch: None,
            limits: InstallLimits::default(),
            tags: Vec::new(),
        }
    }
}

/// The cache directory: `$SECUREBUILD_CACHE_DIR`, else `$XDG_CACHE_HOME/securebuild`, else
/// `~/.cache/securebuild`, else a directory under the system temp dir.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SECUREBUILD_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("securebuild");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".cache/securebuild");
    }
    std::env::temp_dir().join("securebuild-cache")
}

/// One architecture's image.
#[derive(Clone, Debug)]
pub struct BuiltPlatform {
    /// The architecture.
    pub arch: Architecture,
    /// The image manifest's descriptor (with platform).
    pub manifest: Descriptor,
    /// The installed packages, in install order.
    pub packages: Vec<VerifiedPackage>,
    /// What the image's `/etc/os-release` says.
    pub release: ReleaseInfo,
    /// The image's layers, bottom first.
    pub layers: Vec<LayerSummary>,
}

/// One layer of a built image, for the layer table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSummary {
    /// How it was made.
    pub kind: LayerKind,
    /// `name=version` of the packages it holds.
    pub packages: Vec<String>,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// For a package whose data section could not be used: why.
    pub reason: Option<String>,
}

/// A finished build: an OCI layout plus what it contains.
#[derive(Debug)]
pub struct BuiltImage {
    /// The OCI image layout directory.
    pub layout: PathBuf,
    /// The image index descriptor.
    pub index: Descriptor,
    /// Per architecture, in build order.
    pub platforms: Vec<BuiltPlatform>,
    /// Expanded tags.
    pub tags: Vec<String>,
    /// The resolution the image was built from.
    pub resolution: Resolution,
    /// The lock of this build.
    pub lock: Lock,
    /// The creation time used (seconds since the epoch).
    pub created: i64,
}

impl BuiltImage {
    /// The [`BuildResult`] of this build, with `reference` when it was pushed.
    pub fn result(&self, reference: Option<String>) -> BuildResult {
        BuildResult::success(ImageResult {
            digest: self.index.digest.clone(),
            reference,
            platforms: self
                .platforms
                .iter()
                .map(|p| {
                    let platform = p.arch.platform();
                    PlatformResult {
                        arch: platform.architecture.to_string(),
                        variant: platform.variant.map(str::to_string),
                        digest: p.manifest.digest.clone(),
                    }
                })
                .collect(),
            tags: self.tags.clone(),
            lock: self.resolution.digest(),
            packages: self
                .platforms
                .first()
                .map_or(0, |p| u32::try_from(p.packages.len()).unwrap_or(u32::MAX)),
        })
    }

    /// The layout directory.
    pub fn layout_dir(&self) -> &Path {
        &self.layout
    }
}

/// Resolves a configuration for its architectures (or `options.archs`).
pub async fn resolve_config(
    config: &ImageConfiguration,
    options: &BuildOptions,
) -> Result<Resolution> {
    let config = &services::prepare_service_bundle(config);
    let archs = select_archs(config, &options.archs)?;
    let mut world = config.contents.packages.clone();
    if let Some(lock) = &options.lockfile {
        world = locked_world(lock, &archs)?;
    }
    let mut repositories = config.contents.build_repositories.clone();
    repositories.extend(config.contents.repositories.iter().cloned());
    let request = ResolveRequest {
        repositories,
        keyring: config.contents.keyring.clone(),
        packages: world,
        archs: archs.iter().map(|a| a.apk().to_string()).collect(),
        base_dir: options.config_path.as_deref().map(resolve::base_dir_of),
        allow_untrusted: options.allow_untrusted,
        cache_dir: Some(options.cache_dir.clone()),
    };
    let resolution = resolve::resolve(&request).await?;
    if let Some(lock) = &options.lockfile {
        check_against_lock(&resolution, lock)?;
    }
    Ok(resolution)
}

/// Fetches and verifies every resolved package, per architecture in install order.
pub async fn fetch_packages(
    resolution: &Resolution,
    options: &BuildOptions,
) -> Result<Vec<Vec<VerifiedPackage>>> {
    let fetcher = PackageFetcher::new(repository::http_client()?, options.cache_dir.clone());
    let mut all = Vec::with_capacity(resolution.archs.len());
    for arch in &resolution.archs {
        all.push(fetch_arch(&fetcher, arch, None).await?);
    }
    Ok(all)
}

/// Fetches one architecture's packages; with `spool_dir`, their data streams are decompressed
/// into it while they are verified.
async fn fetch_arch(
    fetcher: &PackageFetcher,
    arch: &ArchResolution,
    spool_dir: Option<&Path>,
) -> Result<Vec<VerifiedPackage>> {
    let refs: Vec<PackageRef> = arch
        .packages
        .iter()
        .map(|p| PackageRef::new(arch.index_of(p), &p.record))
        .collect();
    Ok(match spool_dir {
        Some(dir) => fetcher.fetch_all_spooled(&refs, dir).await?,
        None => fetcher.fetch_all(&refs).await?,
    })
}

/// Builds the image: resolve, fetch, install, assemble, and write the OCI layout at `output`
/// (built next to it and moved into place only when complete).
pub async fn build(
    config: &ImageConfiguration,
    options: &BuildOptions,
    output: &Path,
) -> Result<BuiltImage> {
    if let Some(include) = &config.include {
        return Err(Error::Unsupported {
            what: format!(
                "`include: {include}` in a configuration that was not read from a file (includes are merged when a file is read)"
            ),
        });
    }
    config.validate()?;
    let config = &services::prepare_service_bundle(config);
    let archs = select_archs(config, &options.archs)?;
    let resolution = resolve_config(config, options).await?;
    let created = options
        .source_date_epoch
        .or_else(source_date_epoch_from_env)
        .unwrap_or_else(|| resolution.newest_build_time());
    let versions: BTreeMap<String, String> = resolution
        .archs
        .first()
        .map(|a| {
            a.packages
                .iter()
                .map(|p| (p.record.name.clone(), p.record.version.clone()))
                .collect()
        })
        .unwrap_or_default();
    let tags = tags::expand_all(&options.tags, &versions)?;

    // Spools and layers live in a work directory that is removed when the build ends.
    let staging = options.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&staging).map_err(|source| Error::File {
        path: staging.clone(),
        source,
    })?;
    let work = tempfile::Builder::new()
        .prefix(".securebuild-work-")
        .tempdir_in(&staging)
        .map_err(|source| Error::File {
            path: staging.clone(),
            source,
        })?;

    // Every package is fetched and verified before anything is built. Architectures whose
    // layer is cached need no spools: their packages are only verified.
    let fetcher = PackageFetcher::new(repository::http_client()?, options.cache_dir.clone());
    let layers = LayerCache::new(&options.cache_dir);
    let mut fetched = Vec::with_capacity(archs.len());
    for (arch, resolved) in archs.iter().zip(&resolution.archs) {
        let key = layer_cache_key(config, arch, resolved, &resolution, created, options);
        let cached = key.as_deref().and_then(|key| layers.lookup(key));
        let spool_dir = work.path().join(format!("spool-{}", arch.apk()));
        let spooled = cached.is_none().then_some(spool_dir.as_path());
        let verified = fetch_arch(&fetcher, resolved, spooled).await?;
        fetched.push((key, cached, verified, spool_dir));
    }
    let mut layout = LayoutWriter::create(output)?;

    let mut platforms = Vec::with_capacity(archs.len());
    for ((arch, resolved), (key, cached, verified, spool_dir)) in
        archs.iter().zip(&resolution.archs).zip(fetched)
    {
        let from_cache = match &cached {
            Some(cached) => platform_from_cache(
                config,
                arch,
                cached,
                &layers,
                &verified,
                &mut layout,
                created,
            )?,
            None => None,
        };
        let (manifest, release, layers) = match from_cache {
            Some(done) => done,
            None => {
                if let (Some(key), Some(_)) = (&key, &cached) {
                    // The cached blob no longer matches its digest: drop it, build afresh.
                    if let Err(error) = layers.remove(key) {
                        tracing::warn!(error = %crate::error::Chain(&error), "cannot remove a stale cached layer");
                    }
                    fetch_arch(&fetcher, resolved, Some(&spool_dir)).await?;
                }
                let cache = key.as_deref().map(|key| (&layers, key));
                build_platform(
                    config,
                    arch,
                    &resolution,
                    &verified,
                    &spool_dir,
                    &mut layout,
                    work.path(),
                    created,
                    options,
                    cache,
                )?
            }
        };
        platforms.push(BuiltPlatform {
            arch: arch.clone(),
            manifest,
            packages: verified,
            release,
            layers,
        });
    }
    let index_bytes = ImageIndex {
        manifests: platforms.iter().map(|p| p.manifest.clone()).collect(),
        annotations: layout::index_annotations(config, created)?,
    }
    .to_json()?;
    let index = layout
        .add_bytes(&index_bytes)?
        .descriptor(securebuild_registry::OCI_INDEX_MEDIA_TYPE);
    // A layout always names the image: its tags, or `latest` as docker and skopeo default to.
    let layout_tags = if tags.is_empty() {
        vec!["latest".to_string()]
    } else {
        tags.clone()
    };
    let layout = layout.finish(&index, &layout_tags)?;
    let lock = make_lock(config, options, &resolution, &platforms);
    drop(work);
    Ok(BuiltImage {
        layout,
        index,
        platforms,
        tags,
        resolution,
        lock,
        created,
    })
}

/// Names of the facts a cached layer carries besides its digests: everything
/// [`build_platform`] derives from the installed filesystem. A new derived value must be added
/// here too, or a cache hit would lose it.
const FACT_USER: &str = "user";
const FACT_RELEASE_ID: &str = "os-release.id";
const FACT_RELEASE_VERSION_ID: &str = "os-release.version-id";
const FACT_RELEASE_NAME: &str = "os-release.name";
/// The layers of a package-layered platform ([`CachedLayerRef`] as JSON), kept with its final
/// layer.
const FACT_LAYERS: &str = "layers";

/// One layer of a cached package-layered platform: what the manifest and the layer table
/// say of it, and where its blob is.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedLayerRef {
    kind: LayerKind,
    packages: Vec<String>,
    reason: Option<String>,
    digest: String,
    diff_id: String,
    source: CachedLayerSource,
}

/// Where a cached platform's layer blob is.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "from")]
enum CachedLayerSource {
    /// The data section of the platform's `index`-th package (in install order).
    Package { index: usize },
    /// A layer cache entry of its own (a layer the builder wrote for some packages).
    Entry { key: String },
    /// The platform's own entry (the final layer).
    Platform,
}

/// The layer cache key of one architecture's layer: everything the layer and the facts derived
/// with it depend on (the configuration, the architecture, the creation time, compression and
/// limits, the trusted keys, and every package's full index record, whose `C:` pins its
/// content). `None` when the configuration cannot be serialized: then nothing is cached.
fn layer_cache_key(
    config: &ImageConfiguration,
    arch: &Architecture,
    resolved: &ArchResolution,
    resolution: &Resolution,
    created: i64,
    options: &BuildOptions,
) -> Option<String> {
    let yaml = config.to_yaml().ok()?;
    let mut key = LayerKeyBuilder::new();
    key.field("config", yaml.as_bytes())
        .field("arch", arch.apk().as_bytes())
        .field("created", created.to_string().as_bytes())
        .field(
            "compression",
            format!("{:?}", options.compression).as_bytes(),
        )
        .field("limits", format!("{:?}", options.limits).as_bytes());
    for trusted in &resolution.keys {
        key.field("key", trusted.name.as_bytes())
            .field("key-bytes", &trusted.bytes);
    }
    let mut record = String::new();
    for package in &resolved.packages {
        record.clear();
        write_record(&package.record, &mut record);
        key.field("package", record.as_bytes());
    }
    Some(key.finish())
}

/// One architecture's image from the layer cache, or `None` when a cached blob no longer
/// matches its digest or is gone.
fn platform_from_cache(
    config: &ImageConfiguration,
    arch: &Architecture,
    cached: &CachedLayer,
    cache: &LayerCache,
    verified: &[VerifiedPackage],
    layout: &mut LayoutWriter,
    created: i64,
) -> Result<Option<(Descriptor, ReleaseInfo, Vec<LayerSummary>)>> {
    if let Some(layers) = cached.facts.get(FACT_LAYERS) {
        return layered_platform_from_cache(
            config, arch, cached, layers, cache, verified, layout, created,
        );
    }
    // The layout re-hashes the blob and refuses it if it changed since it was stored.
    let layer = match layout.add_file(&cached.path, Some(&cached.digests.digest)) {
        Ok(blob) => blob.descriptor(cached.digests.media_type),
        Err(error) => {
            tracing::warn!(error = %crate::error::Chain(&error), path = %cached.path.display(), "cached layer is unusable; building it again");
            return Ok(None);
        }
    };
    let (release, user) = cached_facts(cached);
    let (manifest, summary) = finish_single_layer(
        config,
        arch,
        layer,
        &cached.digests.diff_id,
        user.as_deref(),
        layout,
        created,
    )?;
    Ok(Some((manifest, release, summary)))
}

/// The config and manifest of a single-layer platform, and its layer table.
fn finish_single_layer(
    config: &ImageConfiguration,
    arch: &Architecture,
    layer: Descriptor,
    diff_id: &str,
    user: Option<&str>,
    layout: &mut LayoutWriter,
    created: i64,
) -> Result<(Descriptor, Vec<LayerSummary>)> {
    let mut stacked = StackedLayers::default();
    stacked.push(
        layer,
        diff_id.to_string(),
        LayerKind::Single,
        Vec::new(),
        None,
    );
    let manifest = stacked.finish(config, arch, user, layout, created)?;
    Ok((manifest, stacked.summary))
}

/// The release information and user a cached platform carries.
fn cached_facts(cached: &CachedLayer) -> (ReleaseInfo, Option<String>) {
    let fact = |name: &str| cached.facts.get(name).cloned();
    let release = ReleaseInfo {
        id: fact(FACT_RELEASE_ID),
        version_id: fact(FACT_RELEASE_VERSION_ID),
        name: fact(FACT_RELEASE_NAME),
    };
    (release, fact(FACT_USER))
}

/// A package-layered platform from the cache: package layers from the verified packages' own
/// data sections, the layers the builder wrote from their cache entries, the final layer from
/// the platform's entry. `None` when any of them is missing or changed.
#[allow(clippy::too_many_arguments)]
fn layered_platform_from_cache(
    config: &ImageConfiguration,
    arch: &Architecture,
    cached: &CachedLayer,
    layers_json: &str,
    cache: &LayerCache,
    verified: &[VerifiedPackage],
    layout: &mut LayoutWriter,
    created: i64,
) -> Result<Option<(Descriptor, ReleaseInfo, Vec<LayerSummary>)>> {
    let Ok(refs) = serde_json::from_str::<Vec<CachedLayerRef>>(layers_json) else {
        return Ok(None);
    };
    let mut stacked = StackedLayers::default();
    for layer in refs {
        let added = match &layer.source {
            CachedLayerSource::Package { index } => {
                let Some(package) = verified.get(*index) else {
                    return Ok(None);
                };
                layout
                    .add_range(&package.path, package.data_range.clone(), &layer.digest)
                    .map(|blob| blob.descriptor(crate::image::layer::MEDIA_TYPE_LAYER_GZIP))
            }
            CachedLayerSource::Entry { key } => {
                let Some(entry) = cache.lookup(key) else {
                    return Ok(None);
                };
                layout
                    .add_file(&entry.path, Some(&layer.digest))
                    .map(|blob| blob.descriptor(entry.digests.media_type))
            }
            CachedLayerSource::Platform => layout
                .add_file(&cached.path, Some(&layer.digest))
                .map(|blob| blob.descriptor(cached.digests.media_type)),
        };
        let descriptor = match added {
            Ok(descriptor) => descriptor,
            Err(error) => {
                tracing::warn!(error = %crate::error::Chain(&error), digest = %layer.digest, "cached layer is unusable; building again");
                return Ok(None);
            }
        };
        stacked.push(
            descriptor,
            layer.diff_id,
            layer.kind,
            layer.packages,
            layer.reason,
        );
    }
    let (release, user) = cached_facts(cached);
    let manifest = stacked.finish(config, arch, user.as_deref(), layout, created)?;
    Ok(Some((manifest, release, stacked.summary)))
}

/// Keeps a package-layered platform in the layer cache: each layer the builder wrote for
/// some packages under `<key>.<n>`, then the final layer under `key` with the list of all
/// layers (written last, so that a platform entry is only found complete).
fn cache_layered_platform(
    cache: (&LayerCache, &str),
    written: &[layers::WrittenLayer],
    facts: BTreeMap<String, String>,
) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (layer_cache, key) = cache;
    let mut refs = Vec::with_capacity(written.len());
    let mut final_layer = None;
    for (n, layer) in written.iter().enumerate() {
        let source = match (&layer.blob, layer.kind) {
            (LayerBlob::Range { .. }, _) => {
                let index = layer
                    .package_index
                    .ok_or("a package layer without its package")?;
                CachedLayerSource::Package { index }
            }
            (LayerBlob::File(path), LayerKind::Final) => {
                final_layer = Some((path, &layer.digests));
                CachedLayerSource::Platform
            }
            (LayerBlob::File(path), _) => {
                let entry_key = format!("{key}.{n}");
                let incoming = layer_cache.incoming()?;
                std::fs::copy(path, incoming.path())?;
                layer_cache.commit(&entry_key, incoming, &layer.digests, &BTreeMap::new())?;
                CachedLayerSource::Entry { key: entry_key }
            }
        };
        refs.push(CachedLayerRef {
            kind: layer.kind,
            packages: layer.packages.clone(),
            reason: layer.reason.clone(),
            digest: layer.digests.digest.clone(),
            diff_id: layer.digests.diff_id.clone(),
            source,
        });
    }
    let (path, digests) = final_layer.ok_or("no final layer")?;
    let mut facts = facts;
    facts.insert(FACT_LAYERS.to_string(), serde_json::to_string(&refs)?);
    let incoming = layer_cache.incoming()?;
    std::fs::copy(path, incoming.path())?;
    layer_cache.commit(key, incoming, digests, &facts)?;
    Ok(())
}

/// The facts kept with a cached platform.
fn platform_facts(user: &Option<String>, release: &ReleaseInfo) -> BTreeMap<String, String> {
    [
        (FACT_USER, user.clone()),
        (FACT_RELEASE_ID, release.id.clone()),
        (FACT_RELEASE_VERSION_ID, release.version_id.clone()),
        (FACT_RELEASE_NAME, release.name.clone()),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name.to_string(), value?)))
    .collect()
}

/// Installs the spooled packages, generates the builder's files, writes the layer (into the
/// layer cache when `cache` is given) and adds the image's blobs to the layout.
#[allow(clippy::too_many_arguments)]
fn build_platform(
    config: &ImageConfiguration,
    arch: &Architecture,
    resolution: &Resolution,
    verified: &[VerifiedPackage],
    spool_dir: &Path,
    layout: &mut LayoutWriter,
    work: &Path,
    created: i64,
    options: &BuildOptions,
    cache: Option<(&LayerCache, &str)>,
) -> Result<(Descriptor, ReleaseInfo, Vec<LayerSummary>)> {
    let files = verified
        .iter()
        .map(|p| {
            Ok(SpooledPackage {
                record: &p.record,
                path: p.path.clone(),
                spool: package::spool_path(spool_dir, &p.record.checksum()?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut installed = install::install_spooled(&files, &options.limits)?;

    let (user, release) =
        generate_files(config, arch, resolution, verified, &mut installed, created)?;
    if let LayerPlan::Packages { budget } = config.layer_plan() {
        return package_layers(
            config,
            arch,
            verified,
            &installed,
            budget,
            layout,
            work,
            created,
            options,
            (user, release),
            cache,
        );
    }
    // The layer is written straight into the cache when there is one, so that keeping it costs
    // a rename, not a copy.
    let incoming = cache.and_then(|(layers, _)| match layers.incoming() {
        Ok(incoming) => Some(incoming),
        Err(error) => {
            tracing::warn!(error = %crate::error::Chain(&error), "layer cache unavailable; the layer is not kept");
            None
        }
    });
    let work_file = work.join(format!("layer-{}", arch.apk()));
    let layer_file = incoming
        .as_ref()
        .map_or(work_file.as_path(), |incoming| incoming.path());
    let digests = write::write_layer(
        &installed.tree,
        &installed.spools,
        layer_file,
        options.compression,
    )?;
    let layer = layout
        .add_file(layer_file, Some(&digests.digest))?
        .descriptor(digests.media_type);
    if let (Some((layers, key)), Some(incoming)) = (cache, incoming) {
        let facts = platform_facts(&user, &release);
        if let Err(error) = layers.commit(key, incoming, &digests, &facts) {
            tracing::warn!(error = %crate::error::Chain(&error), "cannot keep the layer in the layer cache");
        }
    }
    let (manifest, summary) = finish_single_layer(
        config,
        arch,
        layer,
        &digests.diff_id,
        user.as_deref(),
        layout,
        created,
    )?;
    Ok((manifest, release, summary))
}

/// Writes one architecture's package layers and final layer (see `image::layers`), adds them,
/// the config and the manifest to the layout.
#[allow(clippy::too_many_arguments)]
fn package_layers(
    config: &ImageConfiguration,
    arch: &Architecture,
    verified: &[VerifiedPackage],
    installed: &Installed,
    budget: u32,
    layout: &mut LayoutWriter,
    work: &Path,
    created: i64,
    options: &BuildOptions,
    (user, release): (Option<String>, ReleaseInfo),
    cache: Option<(&LayerCache, &str)>,
) -> Result<(Descriptor, ReleaseInfo, Vec<LayerSummary>)> {
    let packages: Vec<LayerPackage<'_>> = verified
        .iter()
        .map(|p| LayerPackage {
            name: &p.record.name,
            version: &p.record.version,
            origin: p
                .record
                .origin
                .as_deref()
                .filter(|origin| !origin.is_empty())
                .unwrap_or(&p.record.name),
            installed_size: p.record.installed_size,
            apk: &p.path,
            data_range: p.data_range.clone(),
            data_sha256: p.data_sha256,
            data_diff_id: p.data_diff_id,
        })
        .collect();
    let written = layers::write_layers(
        installed,
        &packages,
        budget,
        options.compression,
        work,
        &format!("layer-{}", arch.apk()),
        created,
    )?;
    if let Some(cache) = cache
        && let Err(error) = cache_layered_platform(cache, &written, platform_facts(&user, &release))
    {
        tracing::warn!(%error, "cannot keep the layers in the layer cache");
    }
    let mut stacked = StackedLayers::default();
    for layer in written {
        let blob = match &layer.blob {
            LayerBlob::Range { path, range } => {
                layout.add_range(path, range.clone(), &layer.digests.digest)?
            }
            LayerBlob::File(path) => layout.add_file(path, Some(&layer.digests.digest))?,
        };
        stacked.push(
            blob.descriptor(layer.digests.media_type),
            layer.digests.diff_id,
            layer.kind,
            layer.packages,
            layer.reason,
        );
    }
    let manifest = stacked.finish(config, arch, user.as_deref(), layout, created)?;
    Ok((manifest, release, stacked.summary))
}

/// The layers of one platform as they are added to the layout: manifest descriptors (each
/// annotated with its packages), diff IDs and the layer table.
#[derive(Default)]
struct StackedLayers {
    descriptors: Vec<Descriptor>,
    diff_ids: Vec<String>,
    summary: Vec<LayerSummary>,
}

impl StackedLayers {
    fn push(
        &mut self,
        mut descriptor: Descriptor,
        diff_id: String,
        kind: LayerKind,
        packages: Vec<String>,
        reason: Option<String>,
    ) {
        if !packages.is_empty() {
            descriptor
                .annotations
                .insert(layers::ANNOTATION_PACKAGES.to_string(), packages.join(","));
        }
        self.summary.push(LayerSummary {
            kind,
            packages,
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            reason,
        });
        self.descriptors.push(descriptor);
        self.diff_ids.push(diff_id);
    }

    /// Adds the image config and manifest over these layers.
    fn finish(
        &mut self,
        config: &ImageConfiguration,
        arch: &Architecture,
        user: Option<&str>,
        layout: &mut LayoutWriter,
        created: i64,
    ) -> Result<Descriptor> {
        finish_platform(
            config,
            arch,
            std::mem::take(&mut self.descriptors),
            &self.diff_ids,
            user,
            layout,
            created,
        )
    }
}

/// Adds the image config and manifest of one architecture (whose layers are already in the
/// layout) and returns the manifest's descriptor.
fn finish_platform(
    config: &ImageConfiguration,
    arch: &Architecture,
    layers: Vec<Descriptor>,
    diff_ids: &[String],
    user: Option<&str>,
    layout: &mut LayoutWriter,
    created: i64,
) -> Result<Descriptor> {
    let config_bytes = image_config::image_config_json(&ConfigInput {
        image: config,
        arch,
        diff_ids,
        created,
        user,
    })?;
    let config_descriptor = layout
        .add_bytes(&config_bytes)?
        .descriptor(image_config::MEDIA_TYPE_IMAGE_CONFIG);
    let manifest_bytes = ImageManifest {
        config: config_descriptor,
        layers,
        annotations: image_config::annotations(config),
    }
    .to_json()?;
    let mut manifest = layout
        .add_bytes(&manifest_bytes)?
        .descriptor(securebuild_registry::OCI_MANIFEST_MEDIA_TYPE);
    manifest.platform = Some(Platform::linux(arch));
    Ok(manifest)
}

/// The files the builder generates after the packages are installed, in apko's order: the apk
/// database, accounts, `paths` mutations, `os-release`, certificates, the checksums of the CA
/// bundles and Java truststore, the runtime keyring, the s6 supervision tree, busybox links and
/// `ld.so.cache`.
/// Returns the OCI `User` (the resolved `run-as`) and the image's release information.
fn generate_files(
    config: &ImageConfiguration,
    arch: &Architecture,
    resolution: &Resolution,
    verified: &[VerifiedPackage],
    installed: &mut Installed,
    created: i64,
) -> Result<(Option<String>, ReleaseInfo)> {
    let packages: Vec<apkdb::DbPackage<'_>> = installed
        .packages
        .iter()
        .map(|p| apkdb::DbPackage {
            record: &verified[p.index].record,
            files: &p.paths,
            scripts: &p.scripts,
            triggers: &p.triggers,
            replaces: &p.replaces,
            replaces_priority: p.replaces_priority,
        })
        .collect();
    let keys: Vec<apkdb::ApkKey> = resolution
        .keys
        .iter()
        .map(|k| apkdb::ApkKey {
            name: k.name.clone(),
            pem: k.bytes.clone(),
        })
        .collect();
    let database = apkdb::ApkDbInput {
        packages: &packages,
        world: &config.contents.packages,
        repositories: &config.contents.repositories,
        runtime_repositories: &config.contents.runtime_repositories,
        keys: &keys,
        arch,
    };
    let mut tree = std::mem::take(&mut installed.tree);
    apkdb::write_apk_database(&mut tree, &database, created)?;
    let records: Vec<&crate::apk::index::PackageRecord> =
        verified.iter().map(|p| &p.record).collect();
    let user = accounts::apply_accounts(
        &mut tree,
        &installed.spools,
        config.accounts.as_ref(),
        created,
    )?;
    paths::apply_path_mutations(&mut tree, &config.paths, created)?;
    let release = os_release::apply_os_release(
        &mut tree,
        &installed.spools,
        config.os_release.as_ref(),
        created,
    )?;
    install_configured_files(config, verified, installed, &mut tree, created)?;
    busybox::install_busybox_links(&mut tree, &installed.spools, &records, created)?;
    ldso::generate_ld_so_cache(&mut tree, &installed.spools, arch, created)?;
    installed.tree = tree;
    Ok((user, release))
}

/// `certificates`, the CA bundle and truststore checksums, `contents.runtime_keyring` and the s6
/// supervision tree, in apko's order.
fn install_configured_files(
    config: &ImageConfiguration,
    verified: &[VerifiedPackage],
    installed: &Installed,
    tree: &mut crate::image::tree::Tree,
    created: i64,
) -> Result<()> {
    let wants_providers = config
        .certificates
        .as_ref()
        .is_some_and(|c| !c.providers.is_empty());
    // Per installed package: its `provides` atoms and the paths it owns.
    type Provider = (Vec<String>, Vec<(String, EntryKind)>);
    let provider_data: Vec<Provider> = if wants_providers {
        installed
            .packages
            .iter()
            .map(|p| {
                (
                    verified[p.index]
                        .record
                        .provides
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    p.paths
                        .iter()
                        .map(|path| (path.path.clone(), path.kind.clone()))
                        .collect(),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let providers: Vec<ProviderPackage<'_>> = provider_data
        .iter()
        .map(|(provides, paths)| ProviderPackage { provides, paths })
        .collect();
    certificates::install_certificates(
        tree,
        &installed.spools,
        config.certificates.as_ref(),
        &providers,
        created,
    )?;
    // On every build, as apko does: not only when `certificates` is configured.
    certificates::write_checksums(tree, &installed.spools, created)?;
    runtime_keyring::install_runtime_keyring(tree, &config.contents.runtime_keyring, created)?;
    if let Some(entrypoint) = &config.entrypoint {
        services::write_supervision_tree(tree, &entrypoint.services, created)?;
    }
    Ok(())
}

/// The configuration's architectures, narrowed to `only` when given.
fn select_archs(config: &ImageConfiguration, only: &[Architecture]) -> Result<Vec<Architecture>> {
    let host = Architecture::parse(resolve::host_arch())
        .unwrap_or_else(|_| Architecture::all()[1].clone());
    let all = config.architectures(&host);
    if only.is_empty() {
        return Ok(all);
    }
    let mut selected = Vec::new();
    for arch in only {
        if !config.archs.is_empty() && !all.contains(arch) {
            return Err(Error::ArchNotConfigured {
                arch: arch.to_string(),
                configured: all.iter().map(ToString::to_string).collect(),
            });
        }
        if !selected.contains(arch) {
            selected.push(arch.clone());
        }
    }
    selected.sort();
    Ok(selected)
}

/// `SOURCE_DATE_EPOCH` from the environment, when set to an integer.
pub fn source_date_epoch_from_env() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}

/// The world of a lockfile: every locked package pinned to its version (the first
/// architecture's entries; the resolver pins the others to the same versions).
fn locked_world(lock: &Lock, archs: &[Architecture]) -> Result<Vec<String>> {
    let first = archs.first().map(|a| a.apk()).unwrap_or("x86_64");
    let world: Vec<String> = lock
        .contents
        .packages
        .iter()
        .filter(|p| p.architecture == first)
        .map(|p| format!("{}={}", p.name, p.version))
        .collect();
    if world.is_empty() {
        return Err(Error::LockMismatch {
            detail: format!("the lockfile has no packages for {first}"),
        });
    }
    Ok(world)
}

/// Checks that a resolution installs exactly the lock's packages (names, versions, checksums).
fn check_against_lock(resolution: &Resolution, lock: &Lock) -> Result<()> {
    for arch in &resolution.archs {
        let mut expected: Vec<(&str, &str, &str)> = lock
            .contents
            .packages
            .iter()
            .filter(|p| p.architecture == arch.arch)
            .map(|p| (p.name.as_str(), p.version.as_str(), p.checksum.as_str()))
            .collect();
        let mut resolved: Vec<(&str, &str, &str)> = arch
            .packages
            .iter()
            .map(|p| {
                (
                    p.record.name.as_str(),
                    p.record.version.as_str(),
                    p.record.checksum.as_str(),
                )
            })
            .collect();
        expected.sort_unstable();
        resolved.sort_unstable();
        if expected != resolved {
            let missing: Vec<String> = expected
                .iter()
                .filter(|p| !resolved.contains(p))
                .map(|(n, v, _)| format!("{n}-{v}"))
                .collect();
            let extra: Vec<String> = resolved
                .iter()
                .filter(|p| !expected.contains(p))
                .map(|(n, v, _)| format!("{n}-{v}"))
                .collect();
            return Err(Error::LockMismatch {
                detail: format!(
                    "{}: the repositories no longer give the locked packages (locked but not resolved: {}; resolved but not locked: {})",
                    arch.arch,
                    if missing.is_empty() {
                        "none".to_string()
                    } else {
                        missing.join(", ")
                    },
                    if extra.is_empty() {
                        "none".to_string()
                    } else {
                        extra.join(", ")
                    },
                ),
            });
        }
    }
    Ok(())
}

/// The lock of a finished (or fetched) resolution.
pub fn make_lock(
    config: &ImageConfiguration,
    options: &BuildOptions,
    resolution: &Resolution,
    platforms: &[BuiltPlatform],
) -> Lock {
    let packages: Vec<&[VerifiedPackage]> =
        platforms.iter().map(|p| p.packages.as_slice()).collect();
    lock_from(config, options, resolution, &packages)
}

/// The lock of a resolution whose packages were fetched (`packages` per architecture).
pub fn lock_from(
    config: &ImageConfiguration,
    options: &BuildOptions,
    resolution: &Resolution,
    packages: &[&[VerifiedPackage]],
) -> Lock {
    use sha2::Digest;
    let config_name = options
        .config_path
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let checksum = config
        .to_yaml()
        .map(|yaml| crate::lock::checksum("sha256", &sha2::Sha256::digest(yaml.as_bytes())));
    let keyring = resolution
        .keys
        .iter()
        .map(|k| LockKeyring {
            name: k.name.clone(),
            url: k.source.clone(),
        })
        .collect();
    let mut repositories = Vec::new();
    let mut build_repositories = Vec::new();
    let mut locked = Vec::new();
    for (arch, verified) in resolution.archs.iter().zip(packages) {
        for index in &arch.indexes {
            let entry = LockRepository {
                name: index.spec.original.clone(),
                url: index
                    .spec
                    .location
                    .index_location(&arch.arch)
                    .map(|l| l.to_string())
                    .unwrap_or_default(),
                architecture: arch.arch.clone(),
            };
            if config
                .contents
                .build_repositories
                .contains(&index.spec.original)
            {
                build_repositories.push(entry);
            } else {
                repositories.push(entry);
            }
        }
        for (resolved, package) in arch.packages.iter().zip(verified.iter()) {
            let url = PackageRef::new(arch.index_of(resolved), &resolved.record)
                .location()
                .map(|l| l.to_string())
                .unwrap_or_default();
            locked.push(LockPackage {
                name: package.record.name.clone(),
                url,
                version: package.record.version.clone(),
                architecture: arch.arch.clone(),
                signature: LockRange::new(
                    package.signature_range.start,
                    package.signature_range.end,
                    "sha1",
                    &sha1_of_range(&package.path, &package.signature_range),
                ),
                control: LockRange::new(
                    package.control_range.start,
                    package.control_range.end,
                    "sha1",
                    &package.control_sha1,
                ),
                data: LockRange::new(
                    package.data_range.start,
                    package.data_range.end,
                    "sha256",
                    &package.data_sha256,
                ),
                checksum: package.record.checksum.clone(),
            });
        }
    }
    Lock {
        version: crate::lock::LOCK_VERSION.to_string(),
        config: Some(LockConfig {
            name: config_name,
            checksum: checksum.unwrap_or_default(),
        }),
        contents: LockContents {
            keyring,
            build_repositories,
            repositories,
            packages: locked,
        },
    }
}

fn sha1_of_range(path: &Path, range: &std::ops::Range<u64>) -> Vec<u8> {
    use sha1::Digest;
    use std::io::{Read, Seek, SeekFrom};
    let mut hasher = sha1::Sha1::new();
    if let Ok(mut file) = std::fs::File::open(path)
        && file.seek(SeekFrom::Start(range.start)).is_ok()
    {
        let mut take = file.take(range.end.saturating_sub(range.start));
        let mut buffer = [0u8; 64 * 1024];
        while let Ok(read) = take.read(&mut buffer) {
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
    }
    hasher.finalize().to_vec()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn example() -> (ImageConfiguration, PathBuf) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.apko.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        (ImageConfiguration::from_yaml(&text).unwrap(), path)
    }

    fn cached_layers(cache: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(cache.join(write::CACHE_LAYERS_DIR))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".layer"))
            .collect();
        names.sort();
        names
    }

    fn inode(path: &Path) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
    }

    #[tokio::test]
    async fn the_layer_cache_serves_unchanged_rebuilds_and_recovers_from_damage() {
        // The cache holds single layers; package layers are the packages' own data sections.
        let (mut config, path) = example();
        config.layering = Some(securebuild_crds::image_config::Layering {
            strategy: Some("none".to_string()),
            budget: None,
        });
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let options = BuildOptions {
            config_path: Some(path),
            cache_dir: cache.clone(),
            work_dir: Some(tmp.path().to_path_buf()),
            ..BuildOptions::default()
        };
        let build_into = |name: &str, options: BuildOptions| {
            let config = config.clone();
            let output = tmp.path().join(name);
            async move { build(&config, &options, &output).await.unwrap() }
        };
        let first = build_into("first.oci", options.clone()).await;
        let layers = cached_layers(&cache);
        assert_eq!(layers.len(), 2, "one layer per architecture: {layers:?}");
        let blob = cache.join(write::CACHE_LAYERS_DIR).join(&layers[0]);
        let stored = inode(&blob);

        // An unchanged rebuild is served from the cache and gives the same image.
        let again = build_into("again.oci", options.clone()).await;
        assert_eq!(again.index, first.index);
        assert_eq!(
            again
                .platforms
                .iter()
                .map(|p| &p.release)
                .collect::<Vec<_>>(),
            first
                .platforms
                .iter()
                .map(|p| &p.release)
                .collect::<Vec<_>>()
        );
        assert_eq!(cached_layers(&cache), layers);
        assert_eq!(
            inode(&blob),
            stored,
            "the cached layer was used, not rewritten"
        );

        // A damaged cached blob is noticed, replaced, and the image is still the same.
        let mut bytes = std::fs::read(&blob).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&blob, &bytes).unwrap();
        let repaired = build_into("repaired.oci", options.clone()).await;
        assert_eq!(repaired.index, first.index);
        assert_ne!(
            std::fs::read(&blob).unwrap(),
            bytes,
            "the entry was rebuilt"
        );

        // Another input is another key: a new layer next to the old ones.
        let later = BuildOptions {
            source_date_epoch: Some(1_800_000_000),
            ..options
        };
        let other = build_into("later.oci", later).await;
        assert_ne!(other.index, first.index);
        assert_eq!(cached_layers(&cache).len(), 4);
    }

    /// A package-layered platform is cached too: the layers the builder wrote (here one for
    /// the packages a budget of one groups, and the final layer) are served again, the package
    /// layers come from the packages themselves.
    #[tokio::test]
    async fn the_layer_cache_serves_package_layered_rebuilds() {
        let (mut config, path) = example();
        config.layering = Some(securebuild_crds::image_config::Layering {
            strategy: Some("origin".to_string()),
            budget: Some(1),
        });
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let options = BuildOptions {
            config_path: Some(path),
            cache_dir: cache.clone(),
            work_dir: Some(tmp.path().to_path_buf()),
            ..BuildOptions::default()
        };
        let build_into = |name: &str| {
            let config = config.clone();
            let options = options.clone();
            let output = tmp.path().join(name);
            async move { build(&config, &options, &output).await.unwrap() }
        };
        let kinds = |image: &BuiltImage| -> Vec<Vec<(LayerKind, Vec<String>, String)>> {
            image
                .platforms
                .iter()
                .map(|p| {
                    p.layers
                        .iter()
                        .map(|l| (l.kind, l.packages.clone(), l.digest.clone()))
                        .collect()
                })
                .collect()
        };
        let first = build_into("first.oci").await;
        let table = kinds(&first);
        assert_eq!(
            table[0].iter().map(|l| l.0).collect::<Vec<_>>(),
            [LayerKind::Rebuilt, LayerKind::Final]
        );
        let layers = cached_layers(&cache);
        assert_eq!(
            layers.len(),
            4,
            "two written layers per architecture: {layers:?}"
        );
        let inodes: Vec<u64> = layers
            .iter()
            .map(|l| inode(&cache.join(write::CACHE_LAYERS_DIR).join(l)))
            .collect();

        let again = build_into("again.oci").await;
        assert_eq!(again.index, first.index);
        assert_eq!(kinds(&again), table, "the same layer table");
        assert_eq!(cached_layers(&cache), layers);
        assert_eq!(
            layers
                .iter()
                .map(|l| inode(&cache.join(write::CACHE_LAYERS_DIR).join(l)))
                .collect::<Vec<_>>(),
            inodes,
            "the cached layers were used, not rewritten"
        );

        // A damaged group layer is noticed and the platform is built again.
        let group = layers.iter().find(|l| l.contains('.')).unwrap();
        let blob = cache.join(write::CACHE_LAYERS_DIR).join(group);
        let mut bytes = std::fs::read(&blob).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&blob, &bytes).unwrap();
        let repaired = build_into("repaired.oci").await;
        assert_eq!(repaired.index, first.index);
        assert_eq!(kinds(&repaired), table);
    }
}
