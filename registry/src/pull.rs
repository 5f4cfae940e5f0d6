//! Pull-side requests whose responses the caller streams itself, as the proxy does: `GET` or
//! `HEAD` of a path below `/v2/<repository>/` (manifests, blobs, tag lists, referrers), sent
//! with the repository's own authorization or with one a client handed over, and answered with
//! whatever status the registry gives. Nothing here reads a body or writes to a registry.

use oci_client::{Reference, RegistryOperation};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response};

use crate::client::{API_ROOT, Registry};
use crate::error::{Action, RegistryError};
use crate::transport::StreamedResponse;

/// Whose authorization a [`PullRequest`] carries.
#[derive(Debug, Clone)]
pub enum PullAuthorization {
    /// The client's own credentials for the registry (from the docker config), with tokens
    /// obtained on first use and renewed once after a 401.
    Own,
    /// An `Authorization` value someone else gave (a client of the proxy), sent as it is, or
    /// none; never stored.
    Forwarded(Option<HeaderValue>),
}

/// A pull-side request below `/v2/<repository>/`.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// `GET` or `HEAD`.
    pub method: Method,
    /// The path below the repository: `manifests/<reference>`, `blobs/<digest>`, `tags/list`
    /// or `referrers/<digest>`.
    pub path: String,
    /// The query string without `?`, when there is one.
    pub query: Option<String>,
    /// Headers to send (`Accept`, `Range`); an `Authorization` here is replaced.
    pub headers: HeaderMap,
    /// Whose authorization to send.
    pub authorization: PullAuthorization,
}

impl PullRequest {
    /// A request with the client's own authorization and no extra headers.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: None,
            headers: HeaderMap::new(),
            authorization: PullAuthorization::Own,
        }
    }
}

impl Registry {
    /// Sends `request` for `repository`'s registry and repository and returns the response
    /// as it came, whatever its status, with the body unread (to be streamed; see
    /// [`crate::transport`] for the bounded buffers). Only connection failures and failures
    /// to authenticate with the client's own credentials are errors; nothing is retried.
    pub async fn pull(
        &self,
        repository: &Reference,
        request: PullRequest,
    ) -> Result<StreamedResponse, RegistryError> {
        let session = self.session(repository).await?;
        let url = self
            .pull_url(repository, &request.path, request.query.as_deref())
            .await?;
        let target = request.path.as_str();
        let mut renewed = false;
        loop {
            let authorization = match &request.authorization {
                PullAuthorization::Forwarded(value) => value.clone(),
                PullAuthorization::Own if renewed => {
                    session.renew(self, RegistryOperation::Pull).await?
                }
                PullAuthorization::Own => {
                    session.authorization(self, RegistryOperation::Pull).await?
                }
            };
            let mut headers = request.headers.clone();
            headers.remove(header::AUTHORIZATION);
            if let Some(value) = authorization.clone() {
                headers.insert(header::AUTHORIZATION, value);
            }
            let response = self
                .streaming()?
                .send(request.method.clone(), &url, headers)
                .await
                .map_err(|source| session.transfer(Action::Pulling, target, source))?;
            let own = matches!(request.authorization, PullAuthorization::Own);
            if response.status().as_u16() == 401 && own && !renewed && authorization.is_some() {
                renewed = true;
                continue;
            }
            return Ok(response);
        }
    }

    /// The URL of a path below `repository`'s `/v2/<repository>/`, as [`Registry::pull`]
    /// requests it (the target of a redirect to the registry).
    pub async fn pull_url(
        &self,
        repository: &Reference,
        path: &str,
        query: Option<&str>,
    ) -> Result<String, RegistryError> {
        let session = self.session(repository).await?;
        let mut url = format!("{}/v2/{}/{path}", session.base_url, session.repository);
        if let Some(query) = query.filter(|query| !query.is_empty()) {
            url.push('?');
            url.push_str(query);
        }
        Ok(url)
    }

    /// Whether the registry's own credentials are anonymous (no `Authorization` is ever
    /// sent for `repository`).
    pub async fn is_anonymous(&self, repository: &Reference) -> Result<bool, RegistryError> {
        let session = self.session(repository).await?;
        Ok(session
            .authorization(self, RegistryOperation::Pull)
            .await?
            .is_none())
    }

    /// `GET /v2/` on `repository`'s registry with `authorization` (or none), answered as it
    /// came: `200`, or `401` with the registry's challenge.
    pub async fn ping(
        &self,
        repository: &Reference,
        authorization: Option<HeaderValue>,
    ) -> Result<Response, RegistryError> {
        let session = self.session(repository).await?;
        let url = format!("{}{API_ROOT}", session.base_url);
        let mut request = self.http.get(&url);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        request
            .send()
            .await
            .map_err(|source| session.connection(Action::Pulling, API_ROOT, source))
    }

    /// `GET realm?query` at a token server on behalf of someone else, with their
    /// `authorization`; answered as it came.
    pub async fn token_request(
        &self,
        repository: &Reference,
        realm: &str,
        query: &str,
        authorization: Option<HeaderValue>,
    ) -> Result<Response, RegistryError> {
        let session = self.session(repository).await?;
        let separator = if realm.contains('?') { '&' } else { '?' };
        let mut request = self.http.get(format!("{realm}{separator}{query}"));
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        request
            .send()
            .await
            .map_err(|source| session.connection(Action::Authenticating, realm, source))
    }
}
