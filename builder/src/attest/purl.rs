//! Package URLs (purl) for APK packages and OCI images in canonical form: lowercase type,
//! namespace and name, percent-encoded components, qualifiers sorted by key; it does not parse
//! purls.

/// Qualifier naming the CPU architecture.
pub const QUALIFIER_ARCH: &str = "arch";
/// Qualifier naming the distribution release (`<id>-<version>`).
pub const QUALIFIER_DISTRO: &str = "distro";
/// Qualifier naming the OCI repository.
pub const QUALIFIER_REPOSITORY_URL: &str = "repository_url";
/// Qualifier naming the OCI tag.
pub const QUALIFIER_TAG: &str = "tag";

/// The purl of an APK package:
/// `pkg:apk/<distro>/<name>@<version>?arch=<arch>[&distro=<id>-<version>]`.
pub fn apk_purl(
    distro: &str,
    name: &str,
    version: &str,
    arch: &str,
    distro_version: Option<&str>,
) -> String {
    let mut qualifiers = vec![(QUALIFIER_ARCH, arch.to_owned())];
    if let Some(release) = distro_version.filter(|release| !release.is_empty()) {
        qualifiers.push((
            QUALIFIER_DISTRO,
            format!("{}-{release}", distro.to_ascii_lowercase()),
        ));
    }
    format_purl(
        "apk",
        Some(&distro.to_ascii_lowercase()),
        &name.to_ascii_lowercase(),
        Some(version),
        qualifiers,
    )
}

/// The purl of an OCI artifact `digest` in `repository` (`registry/path/name`):
/// `pkg:oci/<name>@<digest>?arch=…&repository_url=…&tag=…`.
pub fn oci_purl(repository: &str, digest: &str, arch: Option<&str>, tag: Option<&str>) -> String {
    let name = repository
        .rsplit('/')
        .next()
        .unwrap_or(repository)
        .to_ascii_lowercase();
    let mut qualifiers = vec![(QUALIFIER_REPOSITORY_URL, repository.to_owned())];
    if let Some(arch) = arch.filter(|arch| !arch.is_empty()) {
        qualifiers.push((QUALIFIER_ARCH, arch.to_owned()));
    }
    if let Some(tag) = tag.filter(|tag| !tag.is_empty()) {
        qualifiers.push((QUALIFIER_TAG, tag.to_owned()));
    }
    format_purl("oci", None, &name, Some(digest), qualifiers)
}

/// Assembles a purl from its components, encoding each and sorting qualifiers by key.
fn format_purl(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    version: Option<&str>,
    mut qualifiers: Vec<(&str, String)>,
) -> String {
    let mut purl = format!("pkg:{kind}/");
    if let Some(namespace) = namespace.filter(|namespace| !namespace.is_empty()) {
        for segment in namespace.split('/').filter(|segment| !segment.is_empty()) {
            purl.push_str(&percent_encode(segment));
            purl.push('/');
        }
    }
    purl.push_str(&percent_encode(name));
    if let Some(version) = version.filter(|version| !version.is_empty()) {
        purl.push('@');
        purl.push_str(&percent_encode(version));
    }
    qualifiers.retain(|(_, value)| !value.is_empty());
    qualifiers.sort_by(|a, b| a.0.cmp(b.0));
    for (position, (key, value)) in qualifiers.iter().enumerate() {
        purl.push(if position == 0 { '?' } else { '&' });
        purl.push_str(key);
        purl.push('=');
        purl.push_str(&percent_encode(value));
    }
    purl
}

/// Percent-encodes every byte except ASCII letters and digits, `.-_~` and `:`, as the purl
/// specification requires.
pub fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b'~' | b':') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn formats_canonical_purls() {
        fn check(actual: String, expected: &str) {
            assert_eq!(actual, expected);
        }
        check(
            apk_purl("alpine", "busybox", "1.36.1-r29", "x86_64", None),
            "pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64",
        );
        check(
            apk_purl("Alpine", "Py3-Foo", "1.0_rc1-r0", "aarch64", Some("3.20.3")),
            "pkg:apk/alpine/py3-foo@1.0_rc1-r0?arch=aarch64&distro=alpine-3.20.3",
        );
        check(
            apk_purl("wolfi", "libstdc++", "14.2.0-r1", "x86_64", None),
            "pkg:apk/wolfi/libstdc%2B%2B@14.2.0-r1?arch=x86_64",
        );
        check(
            oci_purl(
                "docker.io/library/debian",
                "sha256:244fd47e07d10",
                Some("amd64"),
                Some("latest"),
            ),
            "pkg:oci/debian@sha256:244fd47e07d10?arch=amd64&repository_url=docker.io%2Flibrary%2Fdebian&tag=latest",
        );
        check(
            oci_purl("localhost:5000/App", "sha256:ab", None, None),
            "pkg:oci/app@sha256:ab?repository_url=localhost:5000%2FApp",
        );
        check(
            percent_encode("a b@c?d#e&f=g/h%"),
            "a%20b%40c%3Fd%23e%26f%3Dg%2Fh%25",
        );
        check(percent_encode("é"), "%C3%A9");
    }
}
