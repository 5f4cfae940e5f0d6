//! Passthrough access: the challenge clients see (with the proxy's realm and the vanity
//! scope), and the token endpoint that asks the upstream's token service for pull access only.

use super::*;

impl Proxy {
    /// For `/v2/` asked of a host with a `passthrough` route: the upstream's challenge when it
    /// refuses the client's credentials (or their absence), so that clients log in.
    pub(super) async fn root_challenge(&self, headers: &HeaderMap) -> Option<SpecError> {
        let host = request_host(headers);
        let route = self
            .routes
            .routes()
            .iter()
            .find(|route| route.access == Access::Passthrough && route.serves_host(host))?;
        let upstream = Reference::with_tag(
            route.registry.clone(),
            "ping".to_owned(),
            PLACEHOLDER_TAG.to_owned(),
        );
        let response = match self
            .registry
            .ping(&upstream, headers.get(header::AUTHORIZATION).cloned())
            .await
        {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(route = %route.label, error = %Chain(&error), "upstream ping failed");
                return Some(SpecError::new(
                    ErrorCode::UpstreamFailed,
                    "the upstream registry could not be reached".to_owned(),
                ));
            }
        };
        if response.status() != StatusCode::UNAUTHORIZED {
            return None;
        }
        let error = SpecError::new(
            ErrorCode::Unauthorized,
            "authentication is required".to_owned(),
        );
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .and_then(Challenge::parse);
        Some(match challenge {
            Some(upstream) => {
                error.with_challenge(self.rewrite_challenge(headers, route, &upstream))
            }
            None => error,
        })
    }

    /// An upstream challenge as a client of `route` sees it; a bearer realm is remembered.
    pub(super) fn rewrite_challenge(
        &self,
        headers: &HeaderMap,
        route: &Route,
        upstream: &Challenge,
    ) -> String {
        if upstream.is_bearer()
            && let Some(realm) = upstream.param("realm")
        {
            self.realms
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(route.registry.clone(), realm.to_owned());
        }
        let realm = format!(
            "{}://{}{TOKEN_PATH}",
            self.client_scheme(headers),
            request_host(headers).unwrap_or("localhost")
        );
        client_challenge(upstream, &realm, |name| route.vanity_name(name)).render()
    }

    /// The scheme clients use: `X-Forwarded-Proto` from an ingress, else the listener's.
    pub(super) fn client_scheme<'a>(&self, headers: &'a HeaderMap) -> &'a str {
        match headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(',').next().unwrap_or_default().trim())
        {
            Some("https") => "https",
            Some("http") => "http",
            _ => self.scheme,
        }
    }

    /// The token endpoint of `passthrough` routes: the client's token request, with its scope
    /// renamed to upstream repositories and cut to `pull`, sent to the upstream's token server
    /// with the client's credentials, and the answer passed back as it came.
    pub(super) async fn token(
        &self,
        headers: &HeaderMap,
        query: &str,
    ) -> Result<(String, Response<Body>), SpecError> {
        let host = request_host(headers);
        let names = scope_repositories(query);
        let target = names
            .first()
            .and_then(|name| self.routes.resolve(host, name))
            .filter(|target| target.route.access == Access::Passthrough)
            .ok_or_else(|| {
                SpecError::new(
                    ErrorCode::NameUnknown,
                    "a token request needs a repository scope naming a passthrough route"
                        .to_owned(),
                )
            })?;
        let route = target.route;
        let upstream_query = upstream_token_query(query, |name| {
            self.routes
                .resolve(host, name)
                .filter(|other| {
                    other.route.access == Access::Passthrough
                        && other.route.registry == route.registry
                })
                .map(|other| other.repository)
        })?;
        let upstream = Reference::with_tag(
            route.registry.clone(),
            target.repository.clone(),
            PLACEHOLDER_TAG.to_owned(),
        );
        let learned = self
            .realms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&route.registry)
            .cloned();
        let realm = match learned {
            Some(realm) => realm,
            None => {
                let response = self.registry.ping(&upstream, None).await.map_err(|error| {
                    tracing::warn!(route = %route.label, error = %Chain(&error), "upstream ping failed");
                    SpecError::new(ErrorCode::UpstreamFailed, "the upstream registry could not be reached".to_owned())
                })?;
                let challenge = response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|value| value.to_str().ok())
                    .and_then(Challenge::parse)
                    .filter(Challenge::is_bearer);
                let realm = challenge
                    .as_ref()
                    .and_then(|challenge| challenge.param("realm"))
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        SpecError::new(
                            ErrorCode::Unsupported,
                            "the upstream offers no token service; send credentials with each request instead".to_owned(),
                        )
                    })?;
                self.realms
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(route.registry.clone(), realm.clone());
                realm
            }
        };
        let response = self
            .registry
            .token_request(&upstream, &realm, &upstream_query, headers.get(header::AUTHORIZATION).cloned())
            .await
            .map_err(|error| {
                tracing::warn!(route = %route.label, error = %Chain(&error), "upstream token request failed");
                SpecError::new(ErrorCode::UpstreamFailed, "the upstream token service could not be reached".to_owned())
            })?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or(JSON)
            .to_owned();
        // A token service refusing the client says how to authenticate: the client needs that
        // challenge to ask its user for credentials.
        let challenge = (status == StatusCode::UNAUTHORIZED)
            .then(|| response.headers().get(header::WWW_AUTHENTICATE))
            .flatten()
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut body = BytesMut::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|_| {
            SpecError::new(
                ErrorCode::UpstreamFailed,
                "the upstream token answer broke off".to_owned(),
            )
        })? {
            if (body.len() + chunk.len()) as u64 > MAX_TOKEN_BYTES {
                return Err(SpecError::new(
                    ErrorCode::UpstreamFailed,
                    "the upstream token answer is too large".to_owned(),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let mut headers = vec![
            (header::CONTENT_TYPE, content_type.as_str()),
            (header::CACHE_CONTROL, "no-store"),
        ];
        if let Some(challenge) = &challenge {
            headers.push((header::WWW_AUTHENTICATE, challenge.as_str()));
        }
        Ok((
            route.label.clone(),
            respond(status, &headers, full(body.freeze())),
        ))
    }
}
