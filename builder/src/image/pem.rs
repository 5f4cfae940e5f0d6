//! PEM blocks as Go's `encoding/pem` reads and writes them, which is what apko uses for the
//! certificates and runtime keys it installs: decoding skips text around blocks, encoding
//! writes 64-column base64 between `-----BEGIN …-----` and `-----END …-----` lines.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// One decoded PEM block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The type, e.g. `CERTIFICATE` or `PUBLIC KEY`.
    pub label: String,
    /// Whether the block had `Key: value` headers (apko's inputs never have them).
    pub has_headers: bool,
    /// The decoded bytes.
    pub bytes: Vec<u8>,
}

impl Block {
    /// The block encoded as Go's `pem.Encode` writes it (headers are not written).
    pub fn encode(&self) -> String {
        encode(&self.label, &self.bytes)
    }
}

/// Encodes `bytes` as a PEM block of type `label`.
pub fn encode(label: &str, bytes: &[u8]) -> String {
    let text = BASE64.encode(bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Every well-formed block of `text`, in order. Text outside blocks and blocks whose body is
/// not base64 or that have no end line are skipped, as Go's `pem.Decode` skips them.
pub fn decode_all(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index].trim_end();
        index += 1;
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let Some(offset) = lines[index..].iter().position(|l| l.trim_end() == end) else {
            continue;
        };
        let body = &lines[index..index + offset];
        let has_headers = body.first().is_some_and(|l| l.contains(':'));
        let encoded: String = body
            .iter()
            .skip_while(|l| l.contains(':'))
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect();
        if let Ok(bytes) = BASE64.decode(encoded.as_bytes()) {
            blocks.push(Block {
                label: label.to_string(),
                has_headers,
                bytes,
            });
            index += offset + 1;
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_around_blocks_is_skipped_and_encoding_wraps_at_64() {
        let bytes: Vec<u8> = (0u8..100).collect();
        let encoded = encode("THING", &bytes);
        assert!(encoded.lines().nth(1).is_some_and(|l| l.len() == 64));
        let text = format!("comment\n{encoded}trailing\n-----BEGIN BROKEN-----\n!!\n");
        let blocks = decode_all(&text);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "THING");
        assert_eq!(blocks[0].bytes, bytes);
        assert_eq!(blocks[0].encode(), encoded);
        assert!(decode_all("not pem").is_empty());
    }
}
