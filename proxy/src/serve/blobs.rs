//! Blobs: streamed from the upstream while their digest is checked (the last chunk is held
//! back until it matches), or redirected to the upstream for anonymous routes in redirect mode.

use super::*;

impl Proxy {
    pub(super) async fn blob(
        &self,
        call: &Call<'_>,
        digest: &str,
    ) -> Result<Response<Body>, SpecError> {
        let range = match call.headers.get(header::RANGE) {
            None => None,
            Some(value) => {
                let text = value.to_str().unwrap_or_default();
                if parse_range(text).is_none() {
                    return Err(SpecError::new(
                        ErrorCode::RangeInvalid,
                        format!(
                            "Range {text:?} is not one byte range (bytes=START-END, bytes=START- or bytes=-LENGTH)"
                        ),
                    ));
                }
                Some(value.clone())
            }
        };
        let path = format!("blobs/{digest}");
        if self.redirect_blobs
            && *call.method == Method::GET
            && call.route.access == Access::Public
            && self
                .registry
                .is_anonymous(&call.upstream)
                .await
                .unwrap_or(false)
        {
            let location = self
                .registry
                .pull_url(&call.upstream, &path, None)
                .await
                .map_err(|error| upstream_error(call, &error))?;
            return Ok(respond(
                StatusCode::TEMPORARY_REDIRECT,
                &[
                    (header::LOCATION, location.as_str()),
                    (
                        HeaderName::from_static(DOCKER_CONTENT_DIGEST_HEADER),
                        digest,
                    ),
                ],
                empty(),
            ));
        }
        let mut request = call.request(call.method.clone(), path);
        if let Some(range) = range {
            request.headers.insert(header::RANGE, range);
        }
        let (response, permit) = self.upstream(call, request).await?;
        let status = response.status();
        if status != StatusCode::OK && status != StatusCode::PARTIAL_CONTENT {
            return Err(self.status_error(call, &response, ErrorCode::BlobUnknown, digest));
        }
        let mut builder = Response::builder()
            .status(status)
            .header(API_VERSION_HEADER, API_VERSION)
            .header(DOCKER_CONTENT_DIGEST_HEADER, digest);
        for name in [
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
            header::ETAG,
        ] {
            if let Some(value) = response.headers().get(&name) {
                builder = builder.header(name, value);
            }
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static(OCTET_STREAM));
        builder = builder.header(header::CONTENT_TYPE, content_type);
        let body = if *call.method == Method::HEAD {
            empty()
        } else {
            let labels = route_labels(call.route);
            let served = self.metrics.bytes_served.get_or_create(&labels).clone();
            let observer = Observer {
                metrics: self.metrics.clone(),
                labels,
                served,
            };
            let length = response.content_length();
            let stream = VerifiedBody::new(
                response.bytes_stream(),
                digest.to_owned(),
                status == StatusCode::OK,
                length,
                observer,
                Some(permit),
            );
            use futures::TryStreamExt as _;
            StreamBody::new(stream.map_ok(hyper::body::Frame::data)).boxed_unsync()
        };
        builder.body(body).map_err(|error| {
            SpecError::new(
                ErrorCode::UpstreamFailed,
                format!("building the response: {error}"),
            )
        })
    }
}

/// Counts bytes served and mismatches of one blob stream.
struct Observer {
    metrics: Metrics,
    labels: RouteLabels,
    /// The route's served-bytes counter, looked up once per stream.
    served: Counter,
}

impl StreamObserver for Observer {
    fn sent(&self, bytes: u64) {
        self.served.inc_by(bytes);
    }

    fn mismatch(&self, error: &StreamError) {
        self.metrics
            .digest_mismatches
            .get_or_create(&self.labels)
            .inc();
        tracing::warn!(route = %self.labels.route, error = %error, "upstream blob does not match its digest; aborted");
    }
}
