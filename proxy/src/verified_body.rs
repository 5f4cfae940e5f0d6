//! Streaming a blob from the upstream to a client while hashing it. The last chunk is held
//! back until the upstream's body has ended and its digest has been checked: when the bytes
//! do not match, the stream ends with an error instead, the connection is aborted and the
//! client never receives a complete body.
//!
//! When the upstream announces the body's length (as registries do for blobs), a chunk is
//! passed on as soon as it is hashed unless it is the one that completes that length; only
//! the final chunk waits. Without a length, every chunk waits for the next one (it might be
//! the last). Either way at most one chunk is held beyond what the connection is writing, so
//! memory stays bounded however large the blob and however slow the client.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use sha2::{Digest as _, Sha256};
use tokio::sync::OwnedSemaphorePermit;

use securebuild_registry::digest::finish_sha256;
use securebuild_registry::transport::TransferError;

/// An error ending a body stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a streamed blob was cut off.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The upstream's bytes hash to another digest.
    #[error("blob {expected} from the upstream hashes to {actual}; the transfer was aborted")]
    DigestMismatch {
        /// The digest asked for.
        expected: String,
        /// The digest of what the upstream sent.
        actual: String,
    },
    /// The upstream connection failed mid-body.
    #[error("reading blob {digest} from the upstream")]
    Upstream {
        /// The digest asked for.
        digest: String,
        /// Why.
        #[source]
        source: TransferError,
    },
}

/// Called with the size of every chunk passed on, and once with the outcome at the end.
pub trait StreamObserver: Send + 'static {
    /// A chunk of `bytes` was handed to the connection.
    fn sent(&self, bytes: u64);
    /// The digest did not match.
    fn mismatch(&self, error: &StreamError);
}

/// A blob body: the upstream's chunks, checked against `expected` when `verify` is set.
pub struct VerifiedBody<S, O> {
    upstream: Pin<Box<S>>,
    expected: String,
    hasher: Option<Sha256>,
    /// Bytes still to come when the upstream announced the length.
    remaining: Option<u64>,
    held: Option<Bytes>,
    done: bool,
    observer: O,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<S, O> VerifiedBody<S, O>
where
    S: Stream<Item = Result<Bytes, TransferError>> + Send + 'static,
    O: StreamObserver,
{
    /// Streams `upstream`, hashing it against `expected` when `verify` (a whole blob, not a
    /// range), holding `permit` (an upstream slot) until the stream is dropped. `length` is
    /// the body's length when the upstream announced it (`Content-Length`).
    pub fn new(
        upstream: S,
        expected: String,
        verify: bool,
        length: Option<u64>,
        observer: O,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Self {
            upstream: Box::pin(upstream),
            expected,
            hasher: verify.then(Sha256::new),
            remaining: length,
            held: None,
            done: false,
            observer,
            _permit: permit,
        }
    }

    fn pass(&mut self, chunk: Bytes) -> Poll<Option<Result<Bytes, BoxError>>> {
        self.observer.sent(chunk.len() as u64);
        Poll::Ready(Some(Ok(chunk)))
    }
}

impl<S, O> Stream for VerifiedBody<S, O>
where
    S: Stream<Item = Result<Bytes, TransferError>> + Send + 'static,
    O: StreamObserver + Unpin,
{
    type Item = Result<Bytes, BoxError>;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.upstream.as_mut().poll_next(context) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    let Some(hasher) = this.hasher.as_mut() else {
                        return this.pass(chunk);
                    };
                    hasher.update(&chunk);
                    if let Some(remaining) = this.remaining.as_mut() {
                        *remaining = remaining.saturating_sub(chunk.len() as u64);
                        if *remaining > 0 {
                            // More is announced, so this is not the last chunk.
                            return this.pass(chunk);
                        }
                    }
                    match this.held.replace(chunk) {
                        Some(previous) => return this.pass(previous),
                        None => continue,
                    }
                }
                Poll::Ready(Some(Err(source))) => {
                    this.done = true;
                    let error = StreamError::Upstream {
                        digest: this.expected.clone(),
                        source,
                    };
                    return Poll::Ready(Some(Err(Box::new(error))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    if let Some(hasher) = this.hasher.take() {
                        let actual = finish_sha256(hasher);
                        if actual != this.expected {
                            this.held = None;
                            let error = StreamError::DigestMismatch {
                                expected: this.expected.clone(),
                                actual,
                            };
                            this.observer.mismatch(&error);
                            return Poll::Ready(Some(Err(Box::new(error))));
                        }
                    }
                    return match this.held.take() {
                        Some(last) => this.pass(last),
                        None => Poll::Ready(None),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures::StreamExt as _;

    use super::*;
    use securebuild_registry::sha256_digest;

    #[derive(Clone, Default)]
    struct Counter(Arc<AtomicU64>, Arc<AtomicU64>);

    impl StreamObserver for Counter {
        fn sent(&self, bytes: u64) {
            self.0.fetch_add(bytes, Ordering::Relaxed);
        }
        fn mismatch(&self, _: &StreamError) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn run(
        chunks: &[&'static [u8]],
        expected: &str,
        verify: bool,
        length: Option<u64>,
    ) -> (Vec<u8>, bool, Counter) {
        let counter = Counter::default();
        let stream = futures::stream::iter(
            chunks
                .iter()
                .map(|chunk| Ok::<_, TransferError>(Bytes::from_static(chunk)))
                .collect::<Vec<_>>(),
        );
        let mut body = VerifiedBody::new(
            stream,
            expected.to_owned(),
            verify,
            length,
            counter.clone(),
            None,
        );
        let mut received = Vec::new();
        let mut failed = false;
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => received.extend_from_slice(&chunk),
                Err(_) => failed = true,
            }
        }
        (received, failed, counter)
    }

    #[tokio::test]
    async fn matching_blobs_pass_whole_and_mismatching_ones_never_complete() {
        let digest = sha256_digest(b"hello world");
        for length in [None, Some(11)] {
            let (bytes, failed, counter) =
                run(&[b"hello", b" ", b"world"], &digest, true, length).await;
            assert_eq!((bytes.as_slice(), failed), (&b"hello world"[..], false));
            assert_eq!(counter.0.load(Ordering::Relaxed), 11);

            let (bytes, failed, counter) =
                run(&[b"hello", b" ", b"w0rld"], &digest, true, length).await;
            assert!(failed);
            assert_eq!(bytes, b"hello ", "the last chunk is withheld");
            assert_eq!(counter.1.load(Ordering::Relaxed), 1);

            let (bytes, failed, _) = run(&[b"w0rld"], &digest, true, length.map(|_| 5)).await;
            assert!(failed && bytes.is_empty());
        }

        let (bytes, failed, _) = run(&[b"part"], &digest, false, None).await;
        assert_eq!((bytes.as_slice(), failed), (&b"part"[..], false));
    }

    #[tokio::test]
    async fn with_an_announced_length_only_the_final_chunk_waits() {
        let digest = sha256_digest(b"hello world");
        let (chunks, mut upstream) = futures::channel::mpsc::unbounded();
        let mut body = VerifiedBody::new(
            futures::stream::poll_fn(move |context| upstream.poll_next_unpin(context)),
            digest,
            true,
            Some(11),
            Counter::default(),
            None,
        );
        let send = |chunk: &'static [u8]| {
            chunks
                .unbounded_send(Ok::<_, TransferError>(Bytes::from_static(chunk)))
                .unwrap();
        };
        send(b"hello");
        assert_eq!(body.next().await.unwrap().unwrap(), &b"hello"[..]);
        send(b" world");
        // The length is complete: the chunk waits for the upstream's end and the check.
        assert!(futures::poll!(body.next()).is_pending());
        chunks.close_channel();
        assert_eq!(body.next().await.unwrap().unwrap(), &b" world"[..]);
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn a_body_shorter_than_announced_never_completes() {
        let digest = sha256_digest(b"hello world");
        let (bytes, failed, _) = run(&[b"hello", b" "], &digest, true, Some(11)).await;
        assert!(failed);
        assert_eq!(bytes, b"hello ");
    }
}
