//! One repository of one registry as the client sees it: its base URL, credentials, the
//! `oci-client` client, the `Authorization` value per operation (obtained on first use and
//! renewed after a 401), sending requests with it, and turning failures into
//! [`RegistryError`]s that name the request.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Bytes, BytesMut};
use oci_client::Reference;
use oci_client::RegistryOperation;
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use reqwest::header::{self, HeaderValue};

use crate::auth::{CredentialSource, shorten};
use crate::client::{API_ROOT, MAX_ERROR_BODY_BYTES, Registry};
use crate::error::{Action, RegistryError, RequestContext, ResponseDetail, is_transient_status};
use crate::token::BEARER_PREFIX;

const BASIC_PREFIX: &str = "Basic";

impl Registry {
    /// Sends a request with the session's authorization, renewing it once after a 401.
    /// Retryable statuses come back as errors; everything else is left to the caller.
    pub(crate) async fn send(
        &self,
        session: &Session,
        operation: RegistryOperation,
        action: Action,
        target: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut renewed = false;
        loop {
            let authorization = if renewed {
                session.renew(self, operation).await?
            } else {
                session.authorization(self, operation).await?
            };
            let mut request = build(&self.http);
            if let Some(value) = authorization.clone() {
                request = request.header(header::AUTHORIZATION, value);
            }
            let response = request
                .send()
                .await
                .map_err(|source| session.connection(action, target, source))?;
            let status = response.status().as_u16();
            if status == 401 && !renewed && authorization.is_some() {
                renewed = true;
                continue;
            }
            if status == 401 || status == 403 || is_transient_status(status) {
                let body = session
                    .read_body(response, MAX_ERROR_BODY_BYTES, action, target)
                    .await?;
                return Err(session.status_error(action, target, status, &body));
            }
            return Ok(response);
        }
    }
}

/// Credentials, clients and authorization for one repository of one registry.
pub(crate) struct Session {
    /// The registry as in references (`docker.io`).
    pub(crate) registry: String,
    pub(crate) repository: String,
    /// `scheme://host` of the API (`https://index.docker.io` for Docker Hub).
    pub(crate) base_url: String,
    /// A reference to the repository, for `oci-client` calls.
    pub(crate) base: Reference,
    pub(crate) oci: oci_client::Client,
    pub(crate) auth: RegistryAuth,
    pub(crate) credentials: CredentialSource,
    /// The `Authorization` value per operation (pull, push) once known; `Some(None)` means
    /// anonymous.
    pub(crate) headers: tokio::sync::Mutex<[Option<Option<HeaderValue>>; 2]>,
}

impl Session {
    pub(crate) fn slot(operation: RegistryOperation) -> usize {
        match operation {
            RegistryOperation::Pull => 0,
            RegistryOperation::Push => 1,
        }
    }

    /// The `Authorization` header for `operation`, authenticating on first use.
    pub(crate) async fn authorization(
        &self,
        registry: &Registry,
        operation: RegistryOperation,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let mut headers = self.headers.lock().await;
        if let Some(value) = &headers[Self::slot(operation)] {
            return Ok(value.clone());
        }
        let value = registry.retrying(|| self.authenticate(operation)).await?;
        headers[Self::slot(operation)] = Some(value.clone());
        Ok(value)
    }

    /// Authenticates again (an expired token) and returns the new header.
    pub(crate) async fn renew(
        &self,
        registry: &Registry,
        operation: RegistryOperation,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let mut headers = self.headers.lock().await;
        let value = registry.retrying(|| self.authenticate(operation)).await?;
        headers[Self::slot(operation)] = Some(value.clone());
        Ok(value)
    }

    /// Runs the token handshake through `oci-client` (which also primes its own token cache)
    /// and turns the outcome into an `Authorization` value.
    pub(crate) async fn authenticate(
        &self,
        operation: RegistryOperation,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let token = self
            .oci
            .auth(&self.base, &self.auth, operation)
            .await
            .map_err(|error| match error {
                OciDistributionError::AuthenticationFailure(message) => {
                    RegistryError::AuthenticationFailed {
                        registry: self.registry.clone(),
                        repository: self.repository.clone(),
                        credentials: Box::new(self.credentials.clone()),
                        message: shorten(message.trim()),
                    }
                }
                other => self.oci_error(Action::Authenticating, API_ROOT, other),
            })?;
        let value = match (token, &self.auth) {
            (Some(token), _) => Some(format!("{BEARER_PREFIX} {token}")),
            (None, RegistryAuth::Basic(username, password)) => Some(format!(
                "{BASIC_PREFIX} {}",
                BASE64.encode(format!("{username}:{password}"))
            )),
            (None, RegistryAuth::Bearer(token)) => Some(format!("{BEARER_PREFIX} {token}")),
            (None, RegistryAuth::Anonymous) => None,
        };
        Ok(value.and_then(|value| {
            let mut header = HeaderValue::from_str(&value).ok()?;
            header.set_sensitive(true);
            Some(header)
        }))
    }

    pub(crate) fn manifest_url(&self, target: &str) -> String {
        format!(
            "{}/v2/{}/manifests/{target}",
            self.base_url, self.repository
        )
    }

    pub(crate) async fn read_body(
        &self,
        mut response: reqwest::Response,
        limit: u64,
        action: Action,
        target: &str,
    ) -> Result<Bytes, RegistryError> {
        if response
            .content_length()
            .is_some_and(|length| length > limit)
        {
            return Err(self.too_large(action, target, limit));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| self.connection(action, target, source))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(self.too_large(action, target, limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Reads a 200 body; any other status becomes an error.
    pub(crate) async fn read_success(
        &self,
        response: reqwest::Response,
        limit: u64,
        action: Action,
        target: &str,
    ) -> Result<Bytes, RegistryError> {
        let status = response.status().as_u16();
        if status != 200 {
            let body = self
                .read_body(response, MAX_ERROR_BODY_BYTES, action, target)
                .await?;
            return Err(self.status_error(action, target, status, &body));
        }
        self.read_body(response, limit, action, target).await
    }

    pub(crate) fn context(&self, action: Action, target: &str) -> Box<RequestContext> {
        Box::new(RequestContext {
            action,
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            target: target.to_owned(),
        })
    }

    pub(crate) fn status_error(
        &self,
        action: Action,
        target: &str,
        status: u16,
        body: &[u8],
    ) -> RegistryError {
        let context = self.context(action, target);
        let detail = ResponseDetail::from_body(body);
        if status == 401 || status == 403 {
            return RegistryError::Unauthorized {
                context,
                status,
                credentials: Box::new(self.credentials.clone()),
                detail,
            };
        }
        RegistryError::Status {
            context,
            status,
            detail,
        }
    }

    pub(crate) fn oci_error(
        &self,
        action: Action,
        target: &str,
        error: OciDistributionError,
    ) -> RegistryError {
        match error {
            OciDistributionError::ServerError { code, message, .. } => {
                self.status_error(action, target, code, message.as_bytes())
            }
            OciDistributionError::UnauthorizedError { .. } => {
                self.status_error(action, target, 401, &[])
            }
            OciDistributionError::RequestError(source) => match source.status() {
                Some(status) => self.status_error(action, target, status.as_u16(), &[]),
                None => self.connection(action, target, source),
            },
            source => RegistryError::Client {
                context: self.context(action, target),
                source,
            },
        }
    }

    pub(crate) fn connection(
        &self,
        action: Action,
        target: &str,
        source: reqwest::Error,
    ) -> RegistryError {
        RegistryError::Connection {
            context: self.context(action, target),
            source,
        }
    }

    pub(crate) fn transfer(
        &self,
        action: Action,
        target: &str,
        source: crate::transport::TransferError,
    ) -> RegistryError {
        RegistryError::Transfer {
            context: self.context(action, target),
            source,
        }
    }

    pub(crate) fn too_large(&self, action: Action, target: &str, limit: u64) -> RegistryError {
        RegistryError::TooLarge {
            context: self.context(action, target),
            limit,
        }
    }

    pub(crate) fn digest_mismatch(
        &self,
        action: Action,
        target: &str,
        expected: &str,
        actual: &str,
    ) -> RegistryError {
        RegistryError::DigestMismatch {
            context: self.context(action, target),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        }
    }
}
