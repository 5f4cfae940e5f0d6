//! Manifests by tag or digest: from the caches when they hold them, otherwise from the
//! upstream, checked against the digest asked for before they are cached or served.

use super::*;

impl Proxy {
    pub(super) async fn manifest(
        &self,
        call: &Call<'_>,
        reference: &ManifestReference,
    ) -> Result<Response<Body>, SpecError> {
        // Clients such as skopeo send one `Accept` header per media type.
        let accepted: Vec<&str> = call
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let accept = if accepted.is_empty() {
            format!("{}, {DEFAULT_ACCEPT_EXTRA}", accept_manifests())
        } else {
            accepted.join(", ")
        };
        // What one client of a passthrough route may read says nothing about another, so
        // those manifests are always asked of the upstream with the client's credentials.
        if call.route.access == Access::Passthrough {
            let (digest, manifest) = self
                .fetch_manifest(call, reference.as_str(), &accept)
                .await?;
            return Ok(manifest_response(call.method, &digest, manifest));
        }
        let (digest, manifest) = match reference {
            ManifestReference::Digest(digest) => {
                let cached = self.manifests.get(digest);
                self.metrics.cache_lookup("manifest", cached.is_some());
                match cached {
                    Some(manifest) => (digest.clone(), manifest),
                    None => {
                        let (digest, manifest) = self.fetch_manifest(call, digest, &accept).await?;
                        (digest, manifest)
                    }
                }
            }
            ManifestReference::Tag(tag) => {
                let key = format!(
                    "{}/{}:{tag}\n{accept}",
                    call.upstream.registry(),
                    call.upstream.repository()
                );
                let cached = self.tags.get(&key).and_then(|target| {
                    self.manifests
                        .get(&target.digest)
                        .map(|manifest| (target.digest, manifest))
                });
                self.metrics.cache_lookup("tag", cached.is_some());
                match cached {
                    Some(found) => found,
                    None => {
                        let (digest, manifest) = self.fetch_manifest(call, tag, &accept).await?;
                        self.tags.insert(
                            key,
                            TagTarget {
                                digest: digest.clone(),
                                media_type: manifest.media_type.clone(),
                            },
                        );
                        (digest, manifest)
                    }
                }
            }
        };
        Ok(manifest_response(call.method, &digest, manifest))
    }

    /// `GET`s a manifest by tag or digest, checks it and keeps it in the cache.
    pub(super) async fn fetch_manifest(
        &self,
        call: &Call<'_>,
        target: &str,
        accept: &str,
    ) -> Result<(String, CachedManifest), SpecError> {
        let mut request = call.request(Method::GET, format!("manifests/{target}"));
        if let Ok(value) = HeaderValue::from_str(accept) {
            request.headers.insert(header::ACCEPT, value);
        }
        let (response, _permit) = self.upstream(call, request).await?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(self.status_error(call, &response, ErrorCode::ManifestUnknown, target));
        }
        let reported = reported_digest(response.headers());
        let media_type = content_media_type(response.headers());
        let bytes = read_limited(response, MAX_MANIFEST_BYTES, call, target).await?;
        let digest = sha256_digest(&bytes);
        let expected = if target.contains(':') {
            Some(target.to_owned())
        } else {
            reported.filter(|reported| reported.starts_with("sha256:"))
        };
        if let Some(expected) = expected
            && expected != digest
        {
            self.metrics
                .digest_mismatches
                .get_or_create(&route_labels(call.route))
                .inc();
            tracing::warn!(
                route = %call.route.label,
                upstream = %call.upstream.registry(),
                %expected,
                actual = %digest,
                "upstream manifest does not match its digest; refused"
            );
            return Err(SpecError::new(
                ErrorCode::UpstreamFailed,
                format!(
                    "the upstream served a manifest for {target} that does not match digest {expected}; it was not passed on"
                ),
            ));
        }
        let media_type = media_type
            .or_else(|| declared_media_type(&bytes))
            .unwrap_or_else(|| OCTET_STREAM.to_owned());
        let manifest = CachedManifest { bytes, media_type };
        if call.route.access == Access::Public {
            self.manifests.insert(&digest, manifest.clone());
        }
        Ok((digest, manifest))
    }
}

/// A manifest with its digest, type and length.
pub(super) fn manifest_response(
    method: &Method,
    digest: &str,
    manifest: CachedManifest,
) -> Response<Body> {
    let length = manifest.bytes.len().to_string();
    respond(
        StatusCode::OK,
        &[
            (header::CONTENT_TYPE, manifest.media_type.as_str()),
            (header::CONTENT_LENGTH, length.as_str()),
            (
                HeaderName::from_static(DOCKER_CONTENT_DIGEST_HEADER),
                digest,
            ),
        ],
        body_for(method, manifest.bytes),
    )
}

/// The `mediaType` a manifest declares in its body.
pub(super) fn declared_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct MediaTypeOnly {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<MediaTypeOnly>(bytes)
        .ok()
        .and_then(|body| body.media_type)
        .filter(|media_type| !media_type.is_empty())
}
