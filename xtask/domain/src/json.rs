//! JSON bytes read through serde_json's text reader.

use serde::de::DeserializeOwned;

/// Parses JSON bytes (a blob, a file, a command's output) through the same reader as text, so
/// that each type's deserializer is compiled once: `serde_json::from_slice` would make rustc
/// compile a second copy of every deserializer for its byte reader. Bytes that are not UTF-8
/// are not JSON (RFC 8259 §8.1) and get serde_json's own error type.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(err) => Err(serde::de::Error::custom(format_args!(
            "not UTF-8 text ({err})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::from_bytes;

    #[test]
    fn reads_json_bytes_and_refuses_bytes_that_are_not_text() {
        let value: serde_json::Value = from_bytes(br#"{"a": [1]}"#).unwrap();
        assert_eq!(value["a"][0], 1);
        let err = from_bytes::<serde_json::Value>(b"{\"a\": \"\xff\"}").unwrap_err();
        assert!(
            err.to_string().starts_with("not UTF-8 text (invalid utf-8"),
            "{err}"
        );
        let err = from_bytes::<serde_json::Value>(b"{\"a\": }").unwrap_err();
        assert_eq!(err.line(), 1, "{err}");
    }
}
