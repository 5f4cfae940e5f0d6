//! Self-tests of the test support library: generated packages and indexes are checked with
//! independent tools (Python's `zlib`, `tarfile`, `hashlib` and `cryptography`, and GNU tar),
//! the file server is driven with a raw HTTP client, and the registry with `curl`.
//!
//! These tests cover only `securebuild_tests`; the engine's own tests live elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use securebuild_tests::apkgen::{
    BuiltPackage, CHECKSUM_PAX_KEY, DEFAULT_BUILDDATE, EntryKind, PackageSpec, Repository,
    SignatureAlgorithm, TAMPERED_RECORD_NAME, TarEntry, TestKey,
};
use securebuild_tests::registry::TestRegistry;
use securebuild_tests::serve::{Fault, ServedDir, Times, etag_for};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{PYTHON_ENV, python};

const OTHER_KEY_NAME: &str = "other@example.com-0badc0de.rsa.pub";

/// Splits gzip members, lists each member's tar entries and verifies the leading signature
/// entry over the next member with the given public key. Prints one JSON document.
const INSPECT_SCRIPT: &str = r#"
import base64, hashlib, io, json, sys, tarfile, zlib
try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
except ImportError as error:
    print("the python module 'cryptography' is missing: %s" % error, file=sys.stderr)
    sys.exit(3)

KEEP = 16 << 20
data = open(sys.argv[1], "rb").read()
key = None
if len(sys.argv) > 2:
    key = serialization.load_pem_public_key(open(sys.argv[2], "rb").read())

members = []
pos = 0
while pos < len(data):
    rest = data[pos:]
    inflater = zlib.decompressobj(31)
    plain = bytearray()
    size = 0
    chunk = inflater.decompress(rest, 1 << 20)
    while True:
        size += len(chunk)
        if size <= KEEP:
            plain += chunk
        if inflater.eof or not inflater.unconsumed_tail:
            break
        chunk = inflater.decompress(inflater.unconsumed_tail, 1 << 20)
    if not inflater.eof:
        raise SystemExit("truncated gzip member at offset %d" % pos)
    used = len(rest) - len(inflater.unused_data)
    raw = data[pos:pos + used]
    pos += used
    member = {
        "compressed_size": len(raw),
        "plain_size": size,
        "sha1_b64": base64.b64encode(hashlib.sha1(raw).digest()).decode(),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "ends_with_eof_blocks": size <= KEEP and plain[-1024:] == bytes(1024),
        "entries": [],
        "raw": raw,
    }
    if size <= KEEP:
        archive = tarfile.open(fileobj=io.BytesIO(bytes(plain)), mode="r:")
        for info in archive:
            entry = {
                "name": info.name,
                "type": info.type.decode(),
                "mode": info.mode,
                "uid": info.uid,
                "gid": info.gid,
                "uname": info.uname,
                "gname": info.gname,
                "size": info.size,
                "mtime": info.mtime,
                "linkname": info.linkname,
                "devmajor": info.devmajor,
                "devminor": info.devminor,
                "pax": dict(info.pax_headers),
            }
            if info.isreg():
                content = archive.extractfile(info).read()
                entry["sha1"] = hashlib.sha1(content).hexdigest()
                entry["b64"] = base64.b64encode(content).decode()
                try:
                    entry["text"] = content.decode()
                except UnicodeDecodeError:
                    pass
            member["entries"].append(entry)
    members.append(member)

signature = None
if members and members[0]["entries"] and members[0]["entries"][0]["name"].startswith(".SIGN.") and len(members) > 1:
    entry = members[0]["entries"][0]
    name = entry["name"]
    digest = hashes.SHA256() if name.startswith(".SIGN.RSA256.") else hashes.SHA1()
    valid = None
    if key is not None:
        try:
            key.verify(base64.b64decode(entry["b64"]), members[1]["raw"], padding.PKCS1v15(), digest)
            valid = True
        except InvalidSignature:
            valid = False
    signature = {"name": name, "valid": valid}

for member in members:
    del member["raw"]
print(json.dumps({"file_size": len(data), "members": members, "signature": signature}))
"#;

/// Runs the inspection script on `file`, verifying the signature with `public_key` if given.
pub(crate) fn inspect(file: &Path, public_key: Option<&Path>) -> Value {
    let python = python();
    let mut command = Command::new(&python);
    command.arg("-c").arg(INSPECT_SCRIPT).arg(file);
    if let Some(key) = public_key {
        command.arg(key);
    }
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {python} (set {PYTHON_ENV}): {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code() != Some(3),
        "{python} lacks a module the checks need: {stderr}; set {PYTHON_ENV} to a python with `cryptography`"
    );
    assert!(
        output.status.success(),
        "inspection of {} failed: {stderr}",
        file.display()
    );
    serde_json::from_slice(&output.stdout).expect("inspection prints json")
}

pub(crate) fn entries(member: &Value) -> &Vec<Value> {
    member["entries"].as_array().expect("entries array")
}

pub(crate) fn entry<'a>(member: &'a Value, name: &str) -> &'a Value {
    entries(member)
        .iter()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name} in {member}"))
}

fn pkginfo_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split_once(" = "))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
        .collect()
}

fn shared_key() -> TestKey {
    TestKey::shared().expect("shared key")
}

fn other_key() -> TestKey {
    TestKey::cached(OTHER_KEY_NAME).expect("other key")
}

/// Writes a built package and the key's public half into `dir`; returns both paths.
fn write_package(dir: &Path, package: &BuiltPackage, key: &TestKey) -> (PathBuf, PathBuf) {
    let path = dir.join(package.file_name());
    std::fs::write(&path, package.bytes()).unwrap();
    (path, key.write_public(dir).unwrap())
}

fn feature_package() -> PackageSpec {
    PackageSpec::new("hello", "2.12.1-r3")
        .description("prints a greeting")
        .url("https://www.gnu.org/software/hello/")
        .license("GPL-3.0-or-later")
        .origin("hello-src")
        .maintainer("Jane Doe <jane@example.com>")
        .commit("0123456789abcdef0123456789abcdef01234567")
        .depends(["so:libc.musl-x86_64.so.1", "busybox>=1.36"])
        .provide("cmd:hello=2.12.1-r3")
        .install_if("hello-base docs")
        .provider_priority(10)
        .replace("hello-legacy")
        .replaces_priority(5)
        .trigger("/usr/share/hello/*")
        .script(".post-install", "#!/bin/sh\necho installed\n")
        .dir("usr", 0o755, 0, 0)
        .dir("usr/bin", 0o755, 0, 0)
        .dir("var/lib/hello", 0o1777, 0, 0)
        .file("usr/bin/hello", "#!/bin/sh\necho hello\n", 0o4755, 0, 0)
        .file("usr/bin/hello-group", "group\n", 0o2711, 0, 42)
        .file("etc/hello.conf", "greeting=hi\n", 0o640, 1000, 1000)
        .xattr("etc/hello.conf", "user.comment", "configured")
        .symlink("usr/bin/hi", "hello")
        .hardlink("usr/bin/hello2", "usr/bin/hello")
        .char_device("dev/null-ish", 1, 3, 0o666)
}

#[test]
fn package_is_a_real_signed_apk() {
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key();
    let package = feature_package().build(&key).unwrap();
    let (apk, public) = write_package(dir.path(), &package, &key);
    let report = inspect(&apk, Some(&public));

    let members = report["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "signature, control and data members");
    assert_eq!(report["file_size"], package.size());
    assert_eq!(
        members[0]["ends_with_eof_blocks"], false,
        "signature tar is cut"
    );
    assert_eq!(
        members[1]["ends_with_eof_blocks"], false,
        "control tar is cut"
    );
    assert_eq!(
        members[2]["ends_with_eof_blocks"], true,
        "data tar is complete"
    );

    let signature = &report["signature"];
    assert_eq!(signature["name"], format!(".SIGN.RSA.{}", key.name()));
    assert_eq!(
        signature["valid"], true,
        "PKCS#1 v1.5 SHA-1 over the control member"
    );

    let control = &members[1];
    let names: Vec<&str> = entries(control)
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [".PKGINFO", ".post-install", ".trigger"]);
    let pkginfo = entry(control, ".PKGINFO")["text"].as_str().unwrap();
    assert_eq!(pkginfo, package.pkginfo());
    let one = |key: &str| pkginfo_values(pkginfo, key).join("|");
    assert_eq!(one("pkgname"), "hello");
    assert_eq!(one("pkgver"), "2.12.1-r3");
    assert_eq!(one("arch"), "x86_64");
    assert_eq!(one("origin"), "hello-src");
    assert_eq!(one("builddate"), DEFAULT_BUILDDATE.to_string());
    assert_eq!(one("depend"), "so:libc.musl-x86_64.so.1|busybox>=1.36");
    assert_eq!(one("provides"), "cmd:hello=2.12.1-r3");
    assert_eq!(one("install_if"), "hello-base docs");
    assert_eq!(one("replaces"), "hello-legacy");
    assert_eq!(one("provider_priority"), "10");
    assert_eq!(one("replaces_priority"), "5");
    assert_eq!(one("triggers"), "/usr/share/hello/*");
    assert_eq!(
        one("datahash"),
        members[2]["sha256"].as_str().unwrap(),
        "datahash covers the data member"
    );
    let file_bytes: u64 = ["#!/bin/sh\necho hello\n", "group\n", "greeting=hi\n"]
        .iter()
        .map(|s| s.len() as u64)
        .sum();
    assert_eq!(one("size"), file_bytes.to_string());
    assert_eq!(package.installed_size(), file_bytes);

    let identity = format!("Q1{}", control["sha1_b64"].as_str().unwrap());
    assert_eq!(
        package.identity(),
        identity,
        "C: is Q1 + base64 sha1 of the control member"
    );

    let data = &members[2];
    let data_names: Vec<&str> = entries(data)
        .iter()
        .filter(|e| e["type"] != "x")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let mut sorted = data_names.clone();
    sorted.sort_unstable();
    assert_eq!(data_names, sorted, "data entries are sorted");
    for e in entries(data) {
        assert_eq!(e["mtime"], DEFAULT_BUILDDATE, "{e}");
        if e["type"] == "0" {
            assert_eq!(e["pax"][CHECKSUM_PAX_KEY], e["sha1"], "checksum of {e}");
        }
    }
    let hello = entry(data, "usr/bin/hello");
    assert_eq!(hello["mode"], 0o4755);
    assert_eq!(
        (hello["uname"].as_str(), hello["gname"].as_str()),
        (Some("root"), Some("root"))
    );
    assert_eq!(entry(data, "usr/bin/hello-group")["mode"], 0o2711);
    assert_eq!(entry(data, "usr/bin/hello-group")["gid"], 42);
    assert_eq!(entry(data, "var/lib/hello")["mode"], 0o1777);
    assert_eq!(entry(data, "var/lib/hello")["type"], "5");
    let conf = entry(data, "etc/hello.conf");
    assert_eq!(
        (
            conf["uid"].as_u64(),
            conf["gid"].as_u64(),
            conf["mode"].as_u64()
        ),
        (Some(1000), Some(1000), Some(0o640))
    );
    assert_eq!(conf["pax"]["SCHILY.xattr.user.comment"], "configured");
    let link = entry(data, "usr/bin/hi");
    assert_eq!(
        (link["type"].as_str(), link["linkname"].as_str()),
        (Some("2"), Some("hello"))
    );
    assert_eq!(
        link["pax"][CHECKSUM_PAX_KEY],
        hex::encode(sha1_of(b"hello")),
        "abuild hashes the link target"
    );
    let hard = entry(data, "usr/bin/hello2");
    assert_eq!(
        (hard["type"].as_str(), hard["linkname"].as_str()),
        (Some("1"), Some("usr/bin/hello"))
    );
    let device = entry(data, "dev/null-ish");
    assert_eq!(
        (
            device["type"].as_str(),
            device["devmajor"].as_u64(),
            device["devminor"].as_u64()
        ),
        (Some("3"), Some(1), Some(3))
    );
}

fn sha1_of(bytes: &[u8]) -> Vec<u8> {
    use sha1::Digest as _;
    sha1::Sha1::digest(bytes).to_vec()
}

#[test]
fn rsa256_signatures_verify_with_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key();
    let package = PackageSpec::new("tiny", "1-r0")
        .file("tiny", "x", 0o644, 0, 0)
        .signature_algorithm(SignatureAlgorithm::RsaSha256)
        .build(&key)
        .unwrap();
    let (apk, public) = write_package(dir.path(), &package, &key);
    let report = inspect(&apk, Some(&public));
    assert_eq!(
        report["signature"]["name"],
        format!(".SIGN.RSA256.{}", key.name())
    );
    assert_eq!(report["signature"]["valid"], true);
}

#[test]
fn gnu_tar_reads_the_concatenated_members_as_one_archive() {
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key();
    let package = feature_package().build(&key).unwrap();
    let (apk, _) = write_package(dir.path(), &package, &key);
    let output = Command::new("tar")
        .args(["--warning=no-unknown-keyword", "-tzf"])
        .arg(&apk)
        .output()
        .expect("tar runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listing = String::from_utf8(output.stdout).unwrap();
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(names[0], format!(".SIGN.RSA.{}", key.name()));
    assert_eq!(names[1..4], [".PKGINFO", ".post-install", ".trigger"]);
    assert!(names.contains(&"usr/bin/hello"), "{listing}");
}

#[test]
fn repository_index_is_signed_and_matches_the_packages() {
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key();
    let repository = Repository::new(&key)
        .description("v3.99 test")
        .package_for_archs(
            PackageSpec::new("musl", "1.2.5-r0")
                .file("lib/ld-musl.so.1", "elf", 0o755, 0, 0)
                .provide("so:libc.musl-x86_64.so.1=1"),
            &["x86_64", "aarch64"],
        )
        .package(feature_package())
        .package(PackageSpec::new("hello", "2.12.1-r4").file(
            "usr/bin/hello",
            "newer",
            0o755,
            0,
            0,
        ));
    let built = repository.write(dir.path()).unwrap();
    let public = key.write_public(dir.path()).unwrap();
    assert_eq!(
        built.archs.keys().collect::<Vec<_>>(),
        ["aarch64", "x86_64"]
    );

    for (arch, contents) in &built.archs {
        let index_path = dir.path().join(arch).join("APKINDEX.tar.gz");
        assert_eq!(std::fs::read(&index_path).unwrap(), contents.index_archive);
        let report = inspect(&index_path, Some(&public));
        let members = report["members"].as_array().unwrap();
        assert_eq!(members.len(), 2, "signature and index members");
        assert_eq!(
            report["signature"]["name"],
            format!(".SIGN.RSA.{}", key.name())
        );
        assert_eq!(
            report["signature"]["valid"], true,
            "signature over the index member"
        );
        let names: Vec<&str> = entries(&members[1])
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["DESCRIPTION", "APKINDEX"]);
        assert_eq!(entry(&members[1], "DESCRIPTION")["text"], "v3.99 test");
        assert_eq!(members[1]["ends_with_eof_blocks"], true);
        let text = entry(&members[1], "APKINDEX")["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(text, contents.index_text);
        assert!(text.ends_with("\n\n"), "records end with a blank line");

        let records: Vec<&str> = text.trim_end().split("\n\n").collect();
        assert_eq!(records.len(), contents.packages.len());
        for record in records {
            let field = |key: char| {
                record
                    .lines()
                    .find_map(|line| line.strip_prefix(&format!("{key}:")))
                    .unwrap_or_default()
                    .to_owned()
            };
            let file = dir
                .path()
                .join(arch)
                .join(format!("{}-{}.apk", field('P'), field('V')));
            let apk = inspect(&file, Some(&public));
            assert_eq!(apk["signature"]["valid"], true, "{}", file.display());
            assert_eq!(
                field('C'),
                format!("Q1{}", apk["members"][1]["sha1_b64"].as_str().unwrap())
            );
            assert_eq!(field('S'), apk["file_size"].to_string());
            assert_eq!(field('A'), *arch);
        }
    }

    let x86 = built.arch("x86_64").unwrap();
    let hello = built.package("x86_64", "hello").unwrap();
    let expected = format!(
        "C:{}\nP:hello\nV:2.12.1-r3\nA:x86_64\nS:{}\nI:{}\nT:prints a greeting\nU:https://www.gnu.org/software/hello/\n\
         L:GPL-3.0-or-later\no:hello-src\nm:Jane Doe <jane@example.com>\nt:{DEFAULT_BUILDDATE}\n\
         c:0123456789abcdef0123456789abcdef01234567\nk:10\nD:so:libc.musl-x86_64.so.1 busybox>=1.36\n\
         p:cmd:hello=2.12.1-r3\ni:hello-base docs\nr:hello-legacy\nq:5\n",
        hello.identity(),
        hello.size(),
        hello.installed_size()
    );
    assert_eq!(hello.index_record(), expected);
    assert!(x86.index_text.contains(&expected));
    assert_eq!(
        x86.packages
            .iter()
            .map(|p| (p.name(), p.version()))
            .collect::<Vec<_>>(),
        [
            ("hello", "2.12.1-r3"),
            ("hello", "2.12.1-r4"),
            ("musl", "1.2.5-r0")
        ]
    );
}

#[test]
fn hostile_index_variants() {
    let key = shared_key();
    let other = other_key();
    let base =
        || Repository::new(&key).package(PackageSpec::new("a", "1-r0").file("a", "a", 0o644, 0, 0));
    let check = |case: &str,
                 repository: Repository,
                 verify_with: &TestKey,
                 member_count: usize,
                 signature: Option<(String, bool)>,
                 tampered: bool| {
        let dir = tempfile::tempdir().unwrap();
        let built = repository.write(dir.path()).unwrap();
        let public = verify_with.write_public(dir.path()).unwrap();
        let report = inspect(&dir.path().join("x86_64/APKINDEX.tar.gz"), Some(&public));
        let members = report["members"].as_array().unwrap();
        assert_eq!(members.len(), member_count, "{case}");
        let reported = report["signature"]["name"]
            .as_str()
            .map(|name| (name.to_owned(), report["signature"]["valid"] == true));
        assert_eq!(reported, signature, "{case}");
        let text = &built.arch("x86_64").unwrap().index_text;
        assert_eq!(text.contains(TAMPERED_RECORD_NAME), tampered, "{case}");
        let index_member = members.last().unwrap();
        assert_eq!(
            entry(index_member, "APKINDEX")["text"].as_str(),
            Some(text.as_str()),
            "{case}"
        );
    };
    let trusted = |prefix: &str| format!("{prefix}{}", key.name());
    check("unsigned", base().unsigned_index(), &key, 1, None, false);
    check(
        "signed by another key",
        base().index_signed_by(&other),
        &other,
        2,
        Some((format!(".SIGN.RSA.{OTHER_KEY_NAME}"), true)),
        false,
    );
    check(
        "forged under the trusted name",
        base().index_forged_by(&other),
        &key,
        2,
        Some((trusted(".SIGN.RSA."), false)),
        false,
    );
    check(
        "tampered after signing",
        base().tamper_index_after_signing(),
        &key,
        2,
        Some((trusted(".SIGN.RSA."), false)),
        true,
    );
    check(
        "rsa256",
        base().index_signature_algorithm(SignatureAlgorithm::RsaSha256),
        &key,
        2,
        Some((trusted(".SIGN.RSA256."), true)),
        false,
    );
}

#[test]
fn hostile_package_variants() {
    let key = shared_key();
    let other = other_key();
    let base = || PackageSpec::new("p", "1-r0").file("p", "payload", 0o644, 0, 0);
    struct Expect {
        members: usize,
        signature_valid: Option<bool>,
        datahash_matches: bool,
        index_checksum_matches: bool,
    }
    let ok = Expect {
        members: 3,
        signature_valid: Some(true),
        datahash_matches: true,
        index_checksum_matches: true,
    };
    let cases: Vec<(&str, PackageSpec, &TestKey, Expect)> = vec![
        (
            "wrong datahash",
            base().wrong_datahash(),
            &key,
            Expect {
                datahash_matches: false,
                ..ok
            },
        ),
        (
            "index checksum mismatch",
            base().index_checksum_mismatch(),
            &key,
            Expect {
                index_checksum_matches: false,
                ..ok
            },
        ),
        (
            "unsigned",
            base().unsigned(),
            &key,
            Expect {
                members: 2,
                signature_valid: None,
                ..ok
            },
        ),
        (
            "corrupt signature",
            base().corrupt_signature(),
            &key,
            Expect {
                signature_valid: Some(false),
                ..ok
            },
        ),
        (
            "signed by another key",
            base().signed_by(&other),
            &other,
            ok,
        ),
    ];
    for (case, spec, verify_with, expect) in cases {
        let dir = tempfile::tempdir().unwrap();
        let package = spec.build(&key).unwrap();
        let (apk, public) = write_package(dir.path(), &package, verify_with);
        let report = inspect(&apk, Some(&public));
        let members = report["members"].as_array().unwrap();
        assert_eq!(members.len(), expect.members, "{case}");
        assert_eq!(
            report["signature"]["valid"].as_bool(),
            expect.signature_valid,
            "{case}"
        );
        let control = &members[members.len() - 2];
        let data = &members[members.len() - 1];
        let pkginfo = entry(control, ".PKGINFO")["text"].as_str().unwrap();
        let datahash = pkginfo_values(pkginfo, "datahash").join("");
        assert_eq!(
            datahash == data["sha256"].as_str().unwrap(),
            expect.datahash_matches,
            "{case}"
        );
        let identity = format!("Q1{}", control["sha1_b64"].as_str().unwrap());
        assert_eq!(package.identity(), identity, "{case}");
        assert_eq!(
            package.index_checksum() == identity,
            expect.index_checksum_matches,
            "{case}"
        );
        assert!(
            package
                .index_record()
                .starts_with(&format!("C:{}\n", package.index_checksum())),
            "{case}"
        );
    }
}

#[test]
fn hostile_entries_are_written_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key();
    let long_name = format!("{}/{}", "d".repeat(150), "f".repeat(90));
    let unsplittable = "x".repeat(180);
    let package = PackageSpec::new("evil", "1-r0")
        .raw_entry(TarEntry::file(
            "../etc/passwd",
            "root::0:0::/root:/bin/sh\n",
            0o644,
        ))
        .raw_entry(TarEntry::file("/abs/file", "absolute", 0o644).owned_by(0, 0))
        .write_through_symlink("escape", "/etc", "shadow", "root::1::::::\n")
        .hardlink("outside", "../../etc/shadow")
        .block_device("disk", 8, 0, 0o660)
        .fifo("pipe", 0o600)
        .raw_entry(TarEntry::file("wrong-sum", "x", 0o644).checksum(
            securebuild_tests::apkgen::ChecksumHeader::Value("00".repeat(20)),
        ))
        .raw_entry(TarEntry::special("numeric", EntryKind::Fifo, 0o644).owned_by(3000, 3000))
        .file(long_name.clone(), "long", 0o644, 0, 0)
        .file(unsplittable.clone(), "very long", 0o644, 0, 0)
        .file("z-first", "declared first", 0o644, 0, 0)
        .build(&key)
        .unwrap();
    let (apk, public) = write_package(dir.path(), &package, &key);
    let report = inspect(&apk, Some(&public));
    assert_eq!(report["signature"]["valid"], true);
    let data = &report["members"][2];
    assert_eq!(entry(data, "../etc/passwd")["type"], "0");
    assert_eq!(entry(data, "/abs/file")["text"], "absolute");
    let names: Vec<&str> = entries(data)
        .iter()
        .filter(|e| e["type"] != "x")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let link_at = names.iter().position(|n| *n == "escape").unwrap();
    assert_eq!(
        names[link_at + 1],
        "escape/shadow",
        "the file follows its symlink"
    );
    assert_eq!(entry(data, "escape")["linkname"], "/etc");
    assert_eq!(entry(data, "outside")["linkname"], "../../etc/shadow");
    assert_eq!(entry(data, "disk")["type"], "4");
    assert_eq!(entry(data, "pipe")["type"], "6");
    assert_eq!(
        entry(data, "wrong-sum")["pax"][CHECKSUM_PAX_KEY],
        "00".repeat(20)
    );
    assert_eq!(entry(data, "numeric")["uname"], "");
    assert_eq!(entry(data, "numeric")["uid"], 3000);
    assert_eq!(entry(data, &long_name)["text"], "long");
    assert_eq!(entry(data, &unsplittable)["text"], "very long");
    assert_eq!(
        entry(data, &unsplittable)["pax"]["path"],
        unsplittable.as_str()
    );

    let ordered = PackageSpec::new("ordered", "1-r0")
        .file("b", "b", 0o644, 0, 0)
        .file("a", "a", 0o644, 0, 0)
        .preserve_order()
        .build(&key)
        .unwrap();
    let (apk, _) = write_package(dir.path(), &ordered, &key);
    let report = inspect(&apk, None);
    let names: Vec<&str> = entries(&report["members"][2])
        .iter()
        .filter(|e| e["type"] != "x")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b", "a"]);
}

#[test]
fn gzip_bomb_is_small_compressed_and_huge_decompressed() {
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key();
    let size: u64 = 64 << 20;
    let package = PackageSpec::new("bomb", "1-r0")
        .gzip_bomb("zeros", size)
        .build(&key)
        .unwrap();
    assert!(
        package.data_member().len() < 1 << 20,
        "compressed {} bytes",
        package.data_member().len()
    );
    assert_eq!(package.installed_size(), size);
    let (apk, public) = write_package(dir.path(), &package, &key);
    let report = inspect(&apk, Some(&public));
    assert_eq!(report["signature"]["valid"], true);
    let data = &report["members"][2];
    assert!(
        data["plain_size"].as_u64().unwrap() > size,
        "{}",
        data["plain_size"]
    );
    assert_eq!(data["sha256"], package.data_sha256_hex());
    let pkginfo = entry(&report["members"][1], ".PKGINFO")["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        pkginfo_values(pkginfo, "datahash"),
        [package.data_sha256_hex()]
    );
}

#[test]
fn output_is_deterministic() {
    let key = shared_key();
    let repository = || {
        Repository::new(&key)
            .package(feature_package())
            .package_for_archs(
                PackageSpec::new("noarch-data", "1-r0").file("usr/share/d", "d", 0o644, 0, 0),
                &["x86_64", "aarch64"],
            )
    };
    let first = repository().build().unwrap();
    let second = repository().build().unwrap();
    for (arch, contents) in &first.archs {
        let again = &second.archs[arch];
        assert_eq!(contents.index_archive, again.index_archive, "{arch}");
        for (a, b) in contents.packages.iter().zip(&again.packages) {
            assert_eq!(
                Sha256::digest(a.bytes()),
                Sha256::digest(b.bytes()),
                "{}",
                a.file_name()
            );
        }
    }

    let seeded = TestKey::from_seed("seeded.rsa.pub", b"fixed seed").unwrap();
    let reseeded = TestKey::from_seed("seeded.rsa.pub", b"fixed seed").unwrap();
    assert_eq!(seeded.public_pem().unwrap(), reseeded.public_pem().unwrap());
    assert_eq!(
        TestKey::shared().unwrap().public_pem().unwrap(),
        key.public_pem().unwrap()
    );
}

#[test]
fn keys_are_pkcs8_pem_under_their_keyring_name() {
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key();
    let public = key.write_public(dir.path()).unwrap();
    assert_eq!(public.file_name().unwrap().to_str(), Some(key.name()));
    let pem = std::fs::read_to_string(&public).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    let private = key.write_private(dir.path()).unwrap();
    assert_eq!(
        private.file_name().unwrap().to_str(),
        key.name().strip_suffix(".pub")
    );
    assert!(
        std::fs::read_to_string(&private)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );

    let fresh = TestKey::generate("fresh@example.com-00000001.rsa.pub").unwrap();
    assert_eq!(fresh.name(), "fresh@example.com-00000001.rsa.pub");
    assert_ne!(fresh.public_pem().unwrap(), key.public_pem().unwrap());

    let output = Command::new(python())
        .args(["-c", "import sys; from cryptography.hazmat.primitives import serialization as s; k = s.load_pem_public_key(open(sys.argv[1], 'rb').read()); print(k.key_size)"])
        .arg(&public)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "2048",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A response read by the raw client.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }
}

/// Sends one request with `Connection: close` and reads until EOF; `None` when the server
/// reset the connection or closed it without a response.
async fn raw_get(server: &ServedDir, path: &str, headers: &[(&str, &str)]) -> Option<RawResponse> {
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        server.addr()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    if stream.read_to_end(&mut raw).await.is_err() || raw.is_empty() {
        return None;
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Option<RawResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(RawResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

fn served_root() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let contents: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    std::fs::create_dir_all(dir.path().join("x86_64")).unwrap();
    std::fs::write(dir.path().join("x86_64/APKINDEX.tar.gz"), &contents).unwrap();
    (dir, contents)
}

#[tokio::test]
async fn served_files_support_etag_range_and_404() {
    let (dir, contents) = served_root();
    std::fs::write(dir.path().join("secret"), "outside").unwrap();
    let server = ServedDir::start(dir.path().join("x86_64")).await.unwrap();
    assert!(server.base_url().starts_with("http://127.0.0.1:"));
    let path = "/APKINDEX.tar.gz";

    let first = raw_get(&server, path, &[]).await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.body, contents);
    assert_eq!(first.content_length(), Some(contents.len()));
    let etag = first.header("etag").unwrap().to_owned();
    assert_eq!(etag, etag_for(&contents));

    let cached = raw_get(&server, path, &[("If-None-Match", &etag)])
        .await
        .unwrap();
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    let stale = raw_get(&server, path, &[("If-None-Match", "\"other\"")])
        .await
        .unwrap();
    assert_eq!(stale.status, 200);

    let ranged = raw_get(&server, path, &[("Range", "bytes=4000-")])
        .await
        .unwrap();
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.header("content-range"), Some("bytes 4000-4999/5000"));
    assert_eq!(ranged.body, contents[4000..]);
    let beyond = raw_get(&server, path, &[("Range", "bytes=5000-")])
        .await
        .unwrap();
    assert_eq!(beyond.status, 416);

    for missing in ["/missing", "/../secret", "/%2e%2e/secret", "/"] {
        assert_eq!(
            raw_get(&server, missing, &[]).await.unwrap().status,
            404,
            "{missing}"
        );
    }

    let recorded = server.requests_for(path);
    assert_eq!(recorded.len(), 5);
    assert_eq!(recorded[0].header("if-none-match"), None);
    assert_eq!(recorded[1].header("If-None-Match"), Some(etag.as_str()));
    assert_eq!(recorded[1].status, Some(304));
    assert_eq!(recorded[3].header("range"), Some("bytes=4000-"));
    assert_eq!(recorded[3].method, "GET");
    assert_eq!(server.requests().len(), 9);
    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn served_connections_are_kept_alive() {
    let (dir, contents) = served_root();
    let server = ServedDir::start(dir.path()).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let request = "GET /x86_64/APKINDEX.tar.gz HTTP/1.1\r\nHost: x\r\n\r\n\
                   HEAD /x86_64/APKINDEX.tar.gz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let first = parse_response(&raw).unwrap();
    assert_eq!(first.status, 200);
    let first_len = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4 + contents.len();
    let second = parse_response(&raw[first_len..]).unwrap();
    assert_eq!(second.status, 200);
    assert!(second.body.is_empty(), "HEAD has no body");
    assert_eq!(second.content_length(), Some(contents.len()));
}

#[tokio::test]
async fn served_faults_are_injected_per_path() {
    #[derive(Clone)]
    enum Expect {
        Status(u16),
        Reset,
        Body {
            status: u16,
            len: usize,
            equal: bool,
            advertised: usize,
        },
    }
    let (dir, contents) = served_root();
    let len = contents.len();
    let replacement = b"replacement".to_vec();
    let cases: Vec<(&str, Fault, Vec<Expect>)> = vec![
        (
            "503 twice",
            Fault::unavailable(),
            vec![
                Expect::Status(503),
                Expect::Status(503),
                Expect::Body {
                    status: 200,
                    len,
                    equal: true,
                    advertised: len,
                },
            ],
        ),
        (
            "429",
            Fault::too_many_requests(7),
            vec![
                Expect::Status(429),
                Expect::Status(429),
                Expect::Status(200),
            ],
        ),
        (
            "reset",
            Fault::Reset,
            vec![Expect::Reset, Expect::Reset, Expect::Status(200)],
        ),
        (
            "truncate",
            Fault::Truncate(10),
            vec![
                Expect::Body {
                    status: 200,
                    len: 10,
                    equal: false,
                    advertised: len
                };
                2
            ]
            .into_iter()
            .chain([Expect::Status(200)])
            .collect(),
        ),
        (
            "corrupt",
            Fault::CorruptBody,
            vec![
                Expect::Body {
                    status: 200,
                    len,
                    equal: false,
                    advertised: len,
                },
                Expect::Body {
                    status: 200,
                    len,
                    equal: false,
                    advertised: len,
                },
                Expect::Body {
                    status: 200,
                    len,
                    equal: true,
                    advertised: len,
                },
            ],
        ),
        (
            "replace",
            Fault::ReplaceBody(replacement.clone()),
            vec![
                Expect::Body {
                    status: 200,
                    len: replacement.len(),
                    equal: false,
                    advertised: replacement.len(),
                },
                Expect::Status(200),
                Expect::Status(200),
            ],
        ),
        (
            "delay",
            Fault::Delay(std::time::Duration::from_millis(20)),
            vec![
                Expect::Body {
                    status: 200,
                    len,
                    equal: true,
                    advertised: len,
                },
                Expect::Status(200),
                Expect::Status(200),
            ],
        ),
    ];
    for (case, fault, expected) in cases {
        let server = ServedDir::start(dir.path()).await.unwrap();
        let path = "x86_64/APKINDEX.tar.gz";
        let times = if case == "503 twice"
            || case == "429"
            || case == "reset"
            || case == "truncate"
            || case == "corrupt"
        {
            2
        } else {
            1
        };
        server.inject(path, Times::First(times), fault.clone());
        for (attempt, expect) in expected.iter().enumerate() {
            let response = raw_get(&server, "/x86_64/APKINDEX.tar.gz", &[]).await;
            match (expect, response) {
                (Expect::Reset, None) => {}
                (Expect::Status(status), Some(response)) => {
                    assert_eq!(response.status, *status, "{case} attempt {attempt}");
                    if *status == 429 {
                        assert_eq!(response.header("retry-after"), Some("7"), "{case}");
                    }
                }
                (
                    Expect::Body {
                        status,
                        len,
                        equal,
                        advertised,
                    },
                    Some(response),
                ) => {
                    assert_eq!(response.status, *status, "{case} attempt {attempt}");
                    assert_eq!(response.body.len(), *len, "{case} attempt {attempt}");
                    assert_eq!(
                        response.body == contents,
                        *equal,
                        "{case} attempt {attempt}"
                    );
                    assert_eq!(
                        response.content_length(),
                        Some(*advertised),
                        "{case} attempt {attempt}"
                    );
                }
                (_, response) => panic!("{case} attempt {attempt}: unexpected {response:?}"),
            }
        }
        let recorded = server.requests_for(path);
        assert_eq!(recorded.len(), expected.len(), "{case}");
        assert_eq!(recorded[0].fault.as_ref(), Some(&fault), "{case}");
        assert_eq!(recorded.last().unwrap().fault, None, "{case}");
        if case == "reset" {
            assert_eq!(recorded[0].status, None);
        }
    }

    let server = ServedDir::start(dir.path()).await.unwrap();
    server.inject(
        "/x86_64/APKINDEX.tar.gz",
        Times::Always,
        Fault::unavailable(),
    );
    for _ in 0..3 {
        assert_eq!(
            raw_get(&server, "/x86_64/APKINDEX.tar.gz", &[])
                .await
                .unwrap()
                .status,
            503
        );
    }
    server.clear_faults();
    assert_eq!(
        raw_get(&server, "/x86_64/APKINDEX.tar.gz", &[])
            .await
            .unwrap()
            .status,
        200
    );
}

/// Runs curl with `args`, returning status, headers and body.
fn curl(args: &[&str]) -> RawResponse {
    let output = Command::new("curl")
        .args(["-sS", "-i"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut raw = output.stdout.as_slice();
    // Skip interim responses such as "100 Continue".
    loop {
        let response = parse_response(raw).expect("http response");
        if response.status != 100 {
            return response;
        }
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        raw = &raw[split + 4..];
    }
}

fn push_and_pull_blob(registry: &TestRegistry, auth: &[&str]) {
    let blob = b"securebuild registry self-test blob".to_vec();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&blob)));
    let url = registry.url();
    let start = curl(
        &[
            auth,
            &[
                "-X",
                "POST",
                &format!("{url}/v2/selftest/blob/blobs/uploads/"),
            ],
        ]
        .concat(),
    );
    assert_eq!(start.status, 202, "{start:?}");
    let location = start.header("location").unwrap();
    let location = if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{url}{location}")
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let dir = tempfile::tempdir().unwrap();
    let blob_file = dir.path().join("blob");
    std::fs::write(&blob_file, &blob).unwrap();
    let data_arg = format!("@{}", blob_file.display());
    let put = curl(
        &[
            auth,
            &[
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &data_arg,
                &format!("{location}{separator}digest={digest}"),
            ],
        ]
        .concat(),
    );
    assert_eq!(put.status, 201, "{put:?}");
    assert_eq!(put.header("docker-content-digest"), Some(digest.as_str()));
    let pulled = curl(&[auth, &[&format!("{url}/v2/selftest/blob/blobs/{digest}")]].concat());
    assert_eq!(pulled.status, 200);
    assert_eq!(pulled.body, blob);
}

#[test]
fn registry_accepts_blob_push_and_pull() {
    let registry = TestRegistry::start().unwrap();
    assert!(registry.host().starts_with("127.0.0.1:"));
    assert_eq!(curl(&[&format!("{}/v2/", registry.url())]).status, 200);
    push_and_pull_blob(&registry, &[]);
    assert!(
        registry
            .storage_dir()
            .join("docker/registry/v2/blobs")
            .is_dir()
    );
    let dir = tempfile::tempdir().unwrap();
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(registry.docker_config_json(dir.path()).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(config, serde_json::json!({ "auths": {} }));
}

#[test]
fn registry_with_auth_requires_credentials() {
    let registry = TestRegistry::start_with_auth("builder", "s3cret").unwrap();
    let anonymous = curl(&[&format!("{}/v2/", registry.url())]);
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic realm="),
        "{anonymous:?}"
    );
    let wrong = curl(&["-u", "builder:wrong", &format!("{}/v2/", registry.url())]);
    assert_eq!(wrong.status, 401);
    assert_eq!(
        curl(&["-u", "builder:s3cret", &format!("{}/v2/", registry.url())]).status,
        200
    );
    push_and_pull_blob(&registry, &["-u", "builder:s3cret"]);

    let dir = tempfile::tempdir().unwrap();
    let path = registry.docker_config_json(dir.path()).unwrap();
    let config: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let auth = config["auths"][registry.host()]["auth"].as_str().unwrap();
    assert_eq!(BASE64.decode(auth).unwrap(), b"builder:s3cret");
}
