//! The APK engine's IO edges against real repositories: signed indexes and packages made by
//! `apkgen`, read from disk or served over loopback HTTP by `serve` with fault injection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use securebuild_builder::apk::archive::{ArchiveError, Limits, Member};
use securebuild_builder::apk::package::{
    PackageError, PackageFetcher, PackageRef, VerifiedPackage,
};
use securebuild_builder::apk::repository::{
    IndexFetchOptions, Location, RepositoryError, RepositoryIndex, RepositorySpec, RetryPolicy,
    fetch_index, http_client, load_keyring,
};
use securebuild_builder::apk::signature::Keyring;
use securebuild_tests::apkgen::{BuiltPackage, BuiltRepository, PackageSpec, Repository, TestKey};
use securebuild_tests::serve::{Fault, ServedDir, Times, etag_for};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

const ARCH: &str = "x86_64";
const OTHER_KEY_NAME: &str = "stranger@example.com-0badc0de.rsa.pub";

/// Quick retries so that fault tests stay fast; no jitter.
fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_millis(50),
        jitter: false,
    }
}

/// A repository written to a temporary directory, with a cache directory beside it.
struct Fixture {
    _dir: TempDir,
    root: PathBuf,
    cache: PathBuf,
    key: TestKey,
    built: BuiltRepository,
}

impl Fixture {
    fn new(build: impl FnOnce(Repository) -> Repository) -> Self {
        let key = TestKey::shared().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let cache = dir.path().join("cache");
        let built = build(Repository::new(&key)).write(&root).unwrap();
        Self {
            _dir: dir,
            root,
            cache,
            key,
            built,
        }
    }

    fn keyring(&self) -> Keyring {
        let mut keyring = Keyring::new();
        keyring
            .add_pem(self.key.name(), &self.key.public_pem().unwrap())
            .unwrap();
        keyring
    }

    fn options(&self) -> IndexFetchOptions {
        IndexFetchOptions {
            cache_dir: Some(self.cache.clone()),
            retry: fast_retries(),
            ..IndexFetchOptions::default()
        }
    }

    /// [`Self::options`] that also accept unsigned and untrusted indexes.
    fn untrusted_options(&self) -> IndexFetchOptions {
        IndexFetchOptions {
            allow_untrusted: true,
            ..self.options()
        }
    }

    fn fetcher(&self) -> PackageFetcher {
        let mut fetcher = PackageFetcher::new(http_client().unwrap(), &self.cache);
        fetcher.retries = fast_retries();
        fetcher
    }

    fn package(&self, name: &str) -> &BuiltPackage {
        self.built.package(ARCH, name).unwrap()
    }

    fn cache_file(&self, package: &BuiltPackage) -> PathBuf {
        self.cache
            .join("packages")
            .join(format!("{}.apk", hex::encode(package.control_sha1())))
    }

    /// Files in `<cache>/packages` (cache entries and leftovers alike).
    fn cached_files(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.cache.join("packages")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    async fn serve(&self) -> ServedDir {
        ServedDir::start(self.root.clone()).await.unwrap()
    }

    async fn index(&self, spec_text: &str) -> Result<RepositoryIndex, RepositoryError> {
        self.index_with(spec_text, &self.options()).await
    }

    async fn index_with(
        &self,
        spec_text: &str,
        options: &IndexFetchOptions,
    ) -> Result<RepositoryIndex, RepositoryError> {
        let spec = RepositorySpec::parse(spec_text, None).unwrap();
        fetch_index(
            &http_client().unwrap(),
            &spec,
            ARCH,
            &self.keyring(),
            options,
        )
        .await
    }
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

fn refs(index: &RepositoryIndex) -> Vec<PackageRef> {
    index
        .packages
        .iter()
        .map(|record| PackageRef::new(index, record))
        .collect()
}

fn only_ref(index: &RepositoryIndex, name: &str) -> PackageRef {
    let record = index
        .packages
        .iter()
        .find(|record| record.name == name)
        .unwrap();
    PackageRef::new(index, record)
}

/// Checks a verified package against what `apkgen` built.
fn assert_matches_built(verified: &VerifiedPackage, built: &BuiltPackage) {
    let bytes = built.bytes();
    assert_eq!(std::fs::read(&verified.path).unwrap(), bytes);
    assert_eq!(verified.apk_sha256, <[u8; 32]>::from(Sha256::digest(bytes)));
    assert_eq!(verified.size, built.size());
    let signature_end = built.signature_member().len() as u64;
    let control_end = signature_end + built.control_member().len() as u64;
    assert_eq!(verified.signature_range, 0..signature_end);
    assert_eq!(verified.control_range, signature_end..control_end);
    assert_eq!(verified.data_range, control_end..built.size());
    assert_eq!(verified.control_sha1, built.control_sha1());
    assert_eq!(hex::encode(verified.data_sha256), built.data_sha256_hex());
    assert_eq!(verified.pkginfo.pkgname, built.name());
    assert_eq!(verified.pkginfo.pkgver, built.version());
    assert_eq!(verified.record.name, built.name());
}

/// Deterministic bytes that do not compress, so that a package is as large as its content.
fn incompressible(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// A repository holding only `big-2.0-r0`, whose one file is `len` incompressible bytes.
fn big_repository(len: usize) -> impl FnOnce(Repository) -> Repository {
    move |repository| {
        repository.package(PackageSpec::new("big", "2.0-r0").file(
            "usr/share/big/blob",
            incompressible(len),
            0o644,
            0,
            0,
        ))
    }
}

fn small_repository(repository: Repository) -> Repository {
    repository
        .package(
            PackageSpec::new("busybox", "1.36.1-r0")
                .file("bin/busybox", b"#!busybox\n".to_vec(), 0o755, 0, 0)
                .depend("musl"),
        )
        .package(PackageSpec::new("musl", "1.2.5-r0").file(
            "lib/ld-musl-x86_64.so.1",
            b"musl".to_vec(),
            0o755,
            0,
            0,
        ))
        .package(PackageSpec::new("ca-certificates-bundle", "20240226-r0").unsigned())
}

#[tokio::test]
async fn local_directory_repository_fetches_and_caches_packages() {
    let fixture = Fixture::new(small_repository);
    let index = fixture.index(&path_text(&fixture.root)).await.unwrap();
    let built_arch = fixture.built.arch(ARCH).unwrap();
    assert_eq!(index.packages.len(), 3);
    assert_eq!(index.signed_by.as_deref(), Some(fixture.key.name()));
    assert_eq!(
        index.sha256,
        <[u8; 32]>::from(Sha256::digest(&built_arch.index_archive))
    );
    assert_eq!(
        index.description.as_deref(),
        Some("securebuild test repository")
    );
    assert_eq!(
        index.base_url_or_path,
        Location::Path(fixture.root.join(ARCH))
    );

    let packages = refs(&index);
    let first = fixture.fetcher().fetch_all(&packages).await.unwrap();
    assert_eq!(first.len(), 3);
    for (verified, package) in first.iter().zip(&packages) {
        assert_eq!(
            verified.record, package.record,
            "results keep the input order"
        );
        assert!(!verified.from_cache);
        assert_matches_built(verified, fixture.package(&package.record.name));
        assert_eq!(
            verified.path,
            fixture.cache_file(fixture.package(&package.record.name))
        );
    }
    let unsigned = first
        .iter()
        .find(|verified| verified.record.name == "ca-certificates-bundle")
        .unwrap();
    assert!(unsigned.signature_range.is_empty());

    let second = fixture.fetcher().fetch_all(&packages).await.unwrap();
    for (again, before) in second.iter().zip(&first) {
        assert!(
            again.from_cache,
            "{} comes from the cache",
            again.record.name
        );
        assert_eq!(
            VerifiedPackage {
                from_cache: false,
                ..again.clone()
            },
            *before,
            "a cache hit reports the same facts"
        );
    }
    assert_eq!(
        fixture.cached_files().len(),
        3,
        "{:?}",
        fixture.cached_files()
    );
}

#[tokio::test]
async fn corrupted_cache_entry_is_replaced() {
    let fixture = Fixture::new(small_repository);
    let index = fixture.index(&path_text(&fixture.root)).await.unwrap();
    let package = only_ref(&index, "busybox");
    fixture.fetcher().fetch(&package).await.unwrap();
    let built = fixture.package("busybox");
    let cache_file = fixture.cache_file(built);
    let mut bytes = std::fs::read(&cache_file).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0xff;
    std::fs::write(&cache_file, &bytes).unwrap();

    let verified = fixture.fetcher().fetch(&package).await.unwrap();
    assert!(
        !verified.from_cache,
        "a damaged cache entry is fetched again"
    );
    assert_matches_built(&verified, built);
}

#[tokio::test]
async fn single_index_archive_file_finds_packages_beside_it() {
    let fixture = Fixture::new(small_repository);
    let index_path = fixture.root.join(ARCH).join("APKINDEX.tar.gz");
    let index = fixture.index(&path_text(&index_path)).await.unwrap();
    assert_eq!(index.packages.len(), 3);
    assert_eq!(
        index.base_url_or_path,
        Location::Path(fixture.root.join(ARCH))
    );
    let verified = fixture
        .fetcher()
        .fetch(&only_ref(&index, "musl"))
        .await
        .unwrap();
    assert_matches_built(&verified, fixture.package("musl"));
}

#[tokio::test]
async fn plain_apkindex_needs_allow_untrusted() {
    let fixture = Fixture::new(small_repository);
    let text_path = fixture.root.join(ARCH).join("APKINDEX");
    std::fs::write(&text_path, &fixture.built.arch(ARCH).unwrap().index_text).unwrap();

    let error = fixture.index(&path_text(&text_path)).await.unwrap_err();
    assert!(
        matches!(&error, RepositoryError::PlainIndexUntrusted { path, .. } if *path == text_path),
        "{error:?}"
    );
    assert!(error.to_string().contains("--allow-untrusted"), "{error}");

    let options = fixture.untrusted_options();
    let index = fixture
        .index_with(&path_text(&text_path), &options)
        .await
        .unwrap();
    assert_eq!(index.packages.len(), 3);
    assert_eq!(index.signed_by, None);
}

#[tokio::test]
async fn http_repository_revalidates_the_cached_index_with_etag() {
    let fixture = Fixture::new(small_repository);
    let served = fixture.serve().await;
    let index_path = format!("/{ARCH}/APKINDEX.tar.gz");

    let first = fixture.index(&served.base_url()).await.unwrap();
    assert_eq!(first.packages.len(), 3);
    assert_eq!(
        first.base_url_or_path,
        Location::Url(format!("{}/{ARCH}", served.base_url()))
    );
    let second = fixture.index(&served.base_url()).await.unwrap();
    assert_eq!(second, first);

    let requests = served.requests_for(&index_path);
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].header("if-none-match"), None);
    assert_eq!(requests[0].status, Some(200));
    let etag = etag_for(&fixture.built.arch(ARCH).unwrap().index_archive);
    assert_eq!(requests[1].header("if-none-match"), Some(etag.as_str()));
    assert_eq!(requests[1].status, Some(304));

    let packages = refs(&first);
    let verified = fixture.fetcher().fetch_all(&packages).await.unwrap();
    for (verified, package) in verified.iter().zip(&packages) {
        assert_matches_built(verified, fixture.package(&package.record.name));
    }
}

#[tokio::test]
async fn keys_load_from_paths_and_loopback_urls() {
    let fixture = Fixture::new(small_repository);
    let keys_dir = fixture.root.join("keys");
    std::fs::create_dir_all(&keys_dir).unwrap();
    let local = fixture.key.write_public(&keys_dir).unwrap();
    let other = TestKey::cached(OTHER_KEY_NAME).unwrap();
    other.write_public(&keys_dir).unwrap();
    let served = fixture.serve().await;
    let client = http_client().unwrap();

    let entries = vec![
        "keys/".to_owned() + fixture.key.name(),
        served.url(&format!("keys/{OTHER_KEY_NAME}")),
    ];
    let (keyring, files) =
        load_keyring(&entries, Some(&fixture.root), &client, Some(&fixture.cache))
            .await
            .unwrap();
    assert_eq!(keyring.len(), 2);
    assert!(keyring.get(fixture.key.name()).is_some());
    assert!(keyring.get(OTHER_KEY_NAME).is_some());
    assert_eq!(files[0].name, fixture.key.name());
    assert_eq!(files[0].bytes, std::fs::read(&local).unwrap());
    assert_eq!(
        files[0].sha256,
        <[u8; 32]>::from(Sha256::digest(&files[0].bytes))
    );
    assert_eq!(files[0].source, entries[0]);
    assert_eq!(files[1].name, OTHER_KEY_NAME);
    assert_eq!(files[1].bytes, other.public_pem().unwrap().into_bytes());

    // The downloaded key is cached and revalidated.
    load_keyring(&entries[1..], None, &client, Some(&fixture.cache))
        .await
        .unwrap();
    let requests = served.requests_for(&format!("keys/{OTHER_KEY_NAME}"));
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].status, Some(304));

    let duplicate = vec![entries[0].clone(), entries[0].clone()];
    let error = load_keyring(&duplicate, Some(&fixture.root), &client, None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RepositoryError::DuplicateKey { .. }),
        "{error:?}"
    );

    let not_a_key = fixture.root.join(ARCH).join("busybox-1.36.1-r0.apk");
    let error = load_keyring(&[path_text(&not_a_key)], None, &client, None)
        .await
        .unwrap_err();
    assert!(matches!(error, RepositoryError::Key { .. }), "{error:?}");

    let error = load_keyring(
        &["http://example.com/keys/k.rsa.pub".to_owned()],
        None,
        &client,
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, RepositoryError::InsecureKeyUrl { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn unsigned_index_is_refused_unless_untrusted_is_allowed() {
    let fixture = Fixture::new(|repository| small_repository(repository).unsigned_index());
    let served = fixture.serve().await;
    let error = fixture.index(&served.base_url()).await.unwrap_err();
    assert!(
        matches!(&error, RepositoryError::UnsignedIndex { repository, .. } if *repository == served.base_url()),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&served.base_url()), "{message}");
    assert!(message.contains("--allow-untrusted"), "{message}");
    assert!(
        !fixture.cache.join("indexes").exists(),
        "a refused index is not cached"
    );

    let options = fixture.untrusted_options();
    let index = fixture
        .index_with(&served.base_url(), &options)
        .await
        .unwrap();
    assert_eq!(index.signed_by, None);
    assert_eq!(index.packages.len(), 3);
}

#[tokio::test]
async fn index_signed_by_an_unknown_key_names_the_key() {
    let other = TestKey::cached(OTHER_KEY_NAME).unwrap();
    let fixture = Fixture::new(|repository| small_repository(repository).index_signed_by(&other));
    let error = fixture.index(&path_text(&fixture.root)).await.unwrap_err();
    assert!(
        matches!(&error, RepositoryError::UntrustedIndex { keys, .. } if keys == &[OTHER_KEY_NAME.to_owned()]),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(OTHER_KEY_NAME), "{message}");
    assert!(message.contains(&path_text(&fixture.root)), "{message}");
    assert!(message.contains("add the key to the keyring"), "{message}");
    assert!(message.contains("--allow-untrusted"), "{message}");

    let options = fixture.untrusted_options();
    let index = fixture
        .index_with(&path_text(&fixture.root), &options)
        .await
        .unwrap();
    assert_eq!(index.signed_by, None);
}

#[tokio::test]
async fn tampered_or_forged_index_is_refused_even_when_untrusted_is_allowed() {
    let other = TestKey::cached(OTHER_KEY_NAME).unwrap();
    for fixture in [
        Fixture::new(|repository| small_repository(repository).tamper_index_after_signing()),
        Fixture::new(|repository| small_repository(repository).index_forged_by(&other)),
    ] {
        for options in [fixture.options(), fixture.untrusted_options()] {
            let error = fixture
                .index_with(&path_text(&fixture.root), &options)
                .await
                .unwrap_err();
            assert!(
                matches!(&error, RepositoryError::BadSignature { key, .. } if key == fixture.key.name()),
                "{error:?}"
            );
        }
    }
}

#[tokio::test]
async fn missing_index_reports_url_and_status() {
    let fixture = Fixture::new(small_repository);
    let served = fixture.serve().await;
    let spec = RepositorySpec::parse(&served.base_url(), None).unwrap();
    let error = fetch_index(
        &http_client().unwrap(),
        &spec,
        "aarch64",
        &fixture.keyring(),
        &fixture.options(),
    )
    .await
    .unwrap_err();
    let url = served.url("aarch64/APKINDEX.tar.gz");
    assert!(
        matches!(&error, RepositoryError::HttpStatus { url: got, status: 404 } if *got == url),
        "{error:?}"
    );
    assert_eq!(
        served.requests_for("aarch64/APKINDEX.tar.gz").len(),
        1,
        "404 is not retried"
    );
    assert!(error.to_string().contains("HTTP 404"), "{error}");
}

#[tokio::test]
async fn package_checksum_mismatches_are_refused_and_not_cached() {
    let fixture = Fixture::new(|repository| {
        repository
            .package(
                PackageSpec::new("wrong-identity", "1.0-r0")
                    .file("etc/a", b"a".to_vec(), 0o644, 0, 0)
                    .index_checksum_mismatch(),
            )
            .package(
                PackageSpec::new("swapped-data", "1.0-r0")
                    .file("etc/b", b"b".to_vec(), 0o644, 0, 0)
                    .wrong_datahash(),
            )
    });
    let served = fixture.serve().await;
    let index = fixture.index(&served.base_url()).await.unwrap();
    let fetcher = fixture.fetcher();

    let error = fetcher
        .fetch(&only_ref(&index, "wrong-identity"))
        .await
        .unwrap_err();
    let built = fixture.package("wrong-identity");
    match &error {
        PackageError::ChecksumMismatch {
            package,
            expected,
            actual,
            what,
        } => {
            assert_eq!(package, "wrong-identity-1.0-r0");
            assert_eq!(*expected, built.index_checksum());
            assert_eq!(*actual, built.identity());
            assert_eq!(*what, Member::Control);
        }
        other => panic!("expected a control checksum mismatch, got {other:?}"),
    }

    let error = fetcher
        .fetch(&only_ref(&index, "swapped-data"))
        .await
        .unwrap_err();
    let built = fixture.package("swapped-data");
    match &error {
        PackageError::ChecksumMismatch { actual, what, .. } => {
            assert_eq!(*actual, built.data_sha256_hex());
            assert_eq!(*what, Member::Data);
        }
        other => panic!("expected a data checksum mismatch, got {other:?}"),
    }
    assert!(error.to_string().contains("swapped-data-1.0-r0"), "{error}");
    assert_eq!(
        fixture.cached_files(),
        Vec::<String>::new(),
        "nothing is cached"
    );
}

#[tokio::test]
async fn package_metadata_must_match_the_record() {
    // The index claims `impostor` for a package whose .PKGINFO says `genuine`.
    let fixture = Fixture::new(|repository| {
        repository.package(PackageSpec::new("genuine", "1.0-r0").file(
            "etc/g",
            b"g".to_vec(),
            0o644,
            0,
            0,
        ))
    });
    let index = fixture.index(&path_text(&fixture.root)).await.unwrap();
    let mut package = only_ref(&index, "genuine");
    package.record.name = "impostor".to_owned();
    std::fs::copy(
        fixture.root.join(ARCH).join("genuine-1.0-r0.apk"),
        fixture.root.join(ARCH).join("impostor-1.0-r0.apk"),
    )
    .unwrap();
    let error = fixture.fetcher().fetch(&package).await.unwrap_err();
    assert!(
        matches!(&error, PackageError::MetadataMismatch { field: "pkgname", actual, .. } if actual == "genuine"),
        "{error:?}"
    );
    assert_eq!(fixture.cached_files(), Vec::<String>::new());
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let fixture = Fixture::new(small_repository);
    let served = fixture.serve().await;
    let index = fixture.index(&served.base_url()).await.unwrap();
    let busybox = format!("{ARCH}/busybox-1.36.1-r0.apk");
    let musl = format!("{ARCH}/musl-1.2.5-r0.apk");
    served.inject(&busybox, Times::First(2), Fault::unavailable());
    served.inject(&musl, Times::First(1), Fault::too_many_requests(1));
    served.inject(&musl, Times::First(1), Fault::Reset);

    let fetcher = fixture.fetcher();
    let verified = fetcher
        .fetch_all(&[only_ref(&index, "busybox"), only_ref(&index, "musl")])
        .await
        .unwrap();
    assert_matches_built(&verified[0], fixture.package("busybox"));
    assert_matches_built(&verified[1], fixture.package("musl"));

    let statuses = |path: &str| -> Vec<Option<u16>> {
        served
            .requests_for(path)
            .iter()
            .map(|request| request.status)
            .collect()
    };
    assert_eq!(statuses(&busybox), [Some(503), Some(503), Some(200)]);
    assert_eq!(statuses(&musl), [Some(429), None, Some(200)]);

    // Retries are bounded: a server that keeps failing gives the last status.
    let certificates = format!("{ARCH}/ca-certificates-bundle-20240226-r0.apk");
    served.inject(&certificates, Times::Always, Fault::unavailable());
    let error = fetcher
        .fetch(&only_ref(&index, "ca-certificates-bundle"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PackageError::HttpStatus { status: 503, url, .. } if url.ends_with(&certificates)),
        "{error:?}"
    );
    assert_eq!(
        statuses(&certificates).len(),
        1 + fast_retries().max_retries
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let fixture = Fixture::new(small_repository);
    let served = fixture.serve().await;
    let index = fixture.index(&served.base_url()).await.unwrap();
    let musl = format!("{ARCH}/musl-1.2.5-r0.apk");
    served.inject(
        &musl,
        Times::Always,
        Fault::Status {
            status: 403,
            retry_after: None,
        },
    );
    let error = fixture
        .fetcher()
        .fetch(&only_ref(&index, "musl"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PackageError::HttpStatus { status: 403, .. }),
        "{error:?}"
    );
    assert_eq!(served.requests_for(&musl).len(), 1);
}

#[tokio::test]
async fn truncated_download_resumes_with_range() {
    let fixture = Fixture::new(big_repository(256 * 1024));
    let served = fixture.serve().await;
    let index = fixture.index(&served.base_url()).await.unwrap();
    let path = format!("{ARCH}/big-2.0-r0.apk");
    let keep = 100_000u64;
    served.inject(&path, Times::First(1), Fault::Truncate(keep));

    let verified = fixture
        .fetcher()
        .fetch(&only_ref(&index, "big"))
        .await
        .unwrap();
    assert_matches_built(&verified, fixture.package("big"));

    let requests = served.requests_for(&path);
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].header("range"), None);
    assert_eq!(
        requests[1].header("range"),
        Some(format!("bytes={keep}-").as_str())
    );
    assert_eq!(requests[1].status, Some(206));
    assert_eq!(
        fixture.cached_files(),
        [format!(
            "{}.apk",
            hex::encode(fixture.package("big").control_sha1())
        )],
        "only the verified package remains"
    );
}

#[tokio::test]
async fn interrupted_download_resumes_in_the_next_run() {
    let fixture = Fixture::new(big_repository(128 * 1024));
    let served = fixture.serve().await;
    let index = fixture.index(&served.base_url()).await.unwrap();
    let path = format!("{ARCH}/big-2.0-r0.apk");
    let keep = 40_000u64;
    served.inject(&path, Times::First(1), Fault::Truncate(keep));
    served.inject(
        &path,
        Times::First(fast_retries().max_retries),
        Fault::unavailable(),
    );

    let package = only_ref(&index, "big");
    let error = fixture.fetcher().fetch(&package).await.unwrap_err();
    assert!(
        matches!(&error, PackageError::HttpStatus { status: 503, .. }),
        "{error:?}"
    );
    let built = fixture.package("big");
    let partial = fixture.cache_file(built).with_extension("apk.partial");
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), keep);
    assert!(!fixture.cache_file(built).exists());

    let verified = fixture.fetcher().fetch(&package).await.unwrap();
    assert_matches_built(&verified, built);
    let requests = served.requests_for(&path);
    let last = requests.last().unwrap();
    assert_eq!(
        last.header("range"),
        Some(format!("bytes={keep}-").as_str())
    );
    assert_eq!(last.status, Some(206));
    assert!(!partial.exists());
}

#[tokio::test]
async fn corrupted_resume_falls_back_to_a_fresh_download() {
    let fixture = Fixture::new(big_repository(128 * 1024));
    let served = fixture.serve().await;
    let index = fixture.index(&served.base_url()).await.unwrap();
    let path = format!("{ARCH}/big-2.0-r0.apk");
    let built = fixture.package("big");
    // A stale partial download from an earlier run whose bytes are wrong.
    let partial = fixture.cache_file(built).with_extension("apk.partial");
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, vec![0u8; 50_000]).unwrap();

    let verified = fixture
        .fetcher()
        .fetch(&only_ref(&index, "big"))
        .await
        .unwrap();
    assert_matches_built(&verified, built);
    let requests = served.requests_for(&path);
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].header("range"), Some("bytes=50000-"));
    assert_eq!(requests[1].header("range"), None);
    assert!(!partial.exists());
}

#[tokio::test]
async fn gzip_bombs_are_refused_with_a_size_error() {
    const ZEROS: u64 = 32 * 1024 * 1024;
    let fixture = Fixture::new(|repository| {
        repository
            .package(PackageSpec::new("bomb", "1.0-r0").gzip_bomb("usr/share/zeros", ZEROS))
            .package(
                PackageSpec::new("liar", "1.0-r0")
                    .gzip_bomb("usr/share/zeros", ZEROS)
                    .installed_size(4096),
            )
    });
    let index = fixture.index(&path_text(&fixture.root)).await.unwrap();

    // The absolute decompression cap.
    let mut fetcher = fixture.fetcher();
    fetcher.limits = Limits {
        max_data_size: 8 * 1024 * 1024,
        ..Limits::default()
    };
    let error = fetcher.fetch(&only_ref(&index, "bomb")).await.unwrap_err();
    assert!(
        matches!(&error, PackageError::Archive { source, .. }
            if matches!(**source, ArchiveError::TooLarge { member: Member::Data, limit } if limit == 8 * 1024 * 1024)),
        "{error:?}"
    );

    // The cap derived from the index's installed size.
    let mut fetcher = fixture.fetcher();
    fetcher.installed_size_slack = 1024 * 1024;
    let error = fetcher.fetch(&only_ref(&index, "liar")).await.unwrap_err();
    assert!(
        matches!(&error, PackageError::Archive { source, .. }
            if matches!(**source, ArchiveError::TooLarge { member: Member::Data, limit } if limit == 2 * 4096 + 1024 * 1024)),
        "{error:?}"
    );
    assert_eq!(fixture.cached_files(), Vec::<String>::new());
}

#[tokio::test]
async fn oversized_download_is_refused() {
    let fixture = Fixture::new(big_repository(64 * 1024));
    let served = fixture.serve().await;
    let index = fixture.index(&served.base_url()).await.unwrap();
    let mut package = only_ref(&index, "big");
    package.record.size = 1000;
    let mut fetcher = fixture.fetcher();
    fetcher.size_slack = 1000;
    let error = fetcher.fetch(&package).await.unwrap_err();
    assert!(
        matches!(&error, PackageError::TooLarge { limit: 2000, .. }),
        "{error:?}"
    );
    assert_eq!(fixture.cached_files(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_packages_are_fetched_in_parallel() {
    let fixture = Fixture::new(|mut repository| {
        for number in 0..50 {
            repository =
                repository.package(PackageSpec::new(format!("pkg{number:02}"), "1.0-r0").file(
                    format!("usr/share/pkg{number:02}/data"),
                    incompressible(2048 + number * 37),
                    0o644,
                    0,
                    0,
                ));
        }
        repository
    });
    let served = fixture.serve().await;
    let index = fixture.index(&served.base_url()).await.unwrap();
    let mut packages = refs(&index);
    packages.reverse();
    let fetcher = fixture.fetcher();
    let verified = fetcher.fetch_all(&packages).await.unwrap();
    assert_eq!(verified.len(), 50);
    for (verified, package) in verified.iter().zip(&packages) {
        assert_eq!(verified.record, package.record);
        assert_matches_built(verified, fixture.package(&package.record.name));
    }
    let package_requests = |served: &ServedDir| {
        served
            .requests()
            .iter()
            .filter(|request| request.path.ends_with(".apk"))
            .count()
    };
    assert_eq!(package_requests(&served), 50);

    let again = fetcher.fetch_all(&packages).await.unwrap();
    assert!(again.iter().all(|package| package.from_cache));
    assert_eq!(package_requests(&served), 50, "cache hits download nothing");
}
