//! The plain-data types the `moergo` tag stores or keys by: `LayoutUuid`, `ApiDocument` (an API
//! response, screened for credentials), `PublicLayoutTags`, `FirmwareVersion`, `FirmwareImage`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use cache_core::{KeyDisplay, keys};
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{MoergoError, Result};

/// The tag whose public layout lists are kept longer (they change rarely).
pub const GLOVE80_STANDARD_TAG: &str = "glove80-standard";

/// The UUID of a MoErgo layout, in its canonical lower-case hyphenated form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LayoutUuid(String);

impl LayoutUuid {
    /// Parses `text` (a UUID in the 8-4-4-4-12 hex form, any case).
    pub fn parse(text: &str) -> Result<Self> {
        keys::canonical_uuid(text)
            .map(LayoutUuid)
            .ok_or_else(|| MoergoError::InvalidLayoutUuid {
                value: KeyDisplay::new(text.as_bytes()),
            })
    }

    /// The canonical text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LayoutUuid {
    type Err = MoergoError;

    fn from_str(text: &str) -> Result<Self> {
        LayoutUuid::parse(text)
    }
}

impl TryFrom<String> for LayoutUuid {
    type Error = MoergoError;

    fn try_from(text: String) -> Result<Self> {
        LayoutUuid::parse(&text)
    }
}

impl From<LayoutUuid> for String {
    fn from(uuid: LayoutUuid) -> String {
        uuid.0
    }
}

impl fmt::Display for LayoutUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JSON document as the MoErgo API returned it (a layout's config or meta, a versions list),
/// kept as text, and guaranteed to hold no credentials.
///
/// [`ApiDocument::new`] refuses a document in which any object field is named like a credential
/// (`access_token`, `AccessToken`, `id_token`, `refresh_token`, `token`, `password`, `secret`,
/// `client_secret`, `authorization`, `api_key`, `credentials`, `session_token`, `cookie`; compared
/// ignoring case, `_` and `-`), or in which any string looks like a JSON Web Token. Decoding a
/// stored document runs the same check, so an entry written by other means cannot smuggle one
/// back out through this type. The check reads field names as written (escapes inside a field
/// name are not decoded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApiDocument(String);

impl ApiDocument {
    /// Wraps `json` after checking that it holds no credentials.
    pub fn new(json: impl Into<String>) -> Result<Self> {
        let json = json.into();
        match find_credentials(&json) {
            Some(found) => Err(MoergoError::CredentialsRefused { found }),
            None => Ok(ApiDocument(json)),
        }
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JSON text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for ApiDocument {
    type Error = MoergoError;

    fn try_from(json: String) -> Result<Self> {
        ApiDocument::new(json)
    }
}

impl From<ApiDocument> for String {
    fn from(document: ApiDocument) -> String {
        document.0
    }
}

/// Field names that carry credentials, lower case without `_` and `-`.
const CREDENTIAL_FIELDS: [&str; 15] = [
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "token",
    "sessiontoken",
    "password",
    "secret",
    "clientsecret",
    "authorization",
    "apikey",
    "credentials",
    "credential",
    "cookie",
    "setcookie",
    "bearer",
];

/// What in `json` looks like a credential: a field name, or a JWT-shaped string. Scans JSON
/// strings (honouring escapes); a string followed by `:` is a field name. Never returns the
/// value itself.
fn find_credentials(json: &str) -> Option<String> {
    let bytes = json.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'"' {
            index += 1;
            continue;
        }
        let start = index + 1;
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        let Some(text) = json.get(start..end.min(bytes.len())) else {
            // Unreachable (`end` stops at a quote or the end of the text, both char boundaries),
            // but a slice of untrusted text is never indexed blindly.
            return None;
        };
        let after = json.get(end.saturating_add(1)..).unwrap_or("");
        let is_field_name = after.trim_start().starts_with(':');
        if is_field_name {
            let normalised: String = text
                .chars()
                .filter(|c| *c != '_' && *c != '-')
                .map(|c| c.to_ascii_lowercase())
                .collect();
            if CREDENTIAL_FIELDS.contains(&normalised.as_str()) {
                return Some(format!("field {text:?}"));
            }
        }
        if looks_like_jwt(text) {
            return Some("a value shaped like a json web token".to_owned());
        }
        index = end.saturating_add(1);
    }
    None
}

/// Whether `text` has the shape of a JSON Web Token: `eyJ` (base64url of `{"`), then three
/// base64url segments separated by dots. Optionally after `Bearer `.
fn looks_like_jwt(text: &str) -> bool {
    let token = text.strip_prefix("Bearer ").unwrap_or(text);
    let segments: Vec<&str> = token.split('.').collect();
    token.starts_with("eyJ")
        && segments.len() == 3
        && segments[..2].iter().all(|segment| segment.len() >= 4)
        && segments.iter().all(|segment| {
            segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

/// The tag set of a public layout list: sorted and deduplicated, so `[b, a, a]` and `[a, b]` are
/// one list. Empty means all public layouts. Tags are compared as given (case-sensitive, as the
/// API compares them); an empty tag is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PublicLayoutTags(BTreeSet<String>);

impl PublicLayoutTags {
    /// The set of `tags`.
    pub fn new<S: AsRef<str>>(tags: impl IntoIterator<Item = S>) -> Result<Self> {
        let mut set = BTreeSet::new();
        for tag in tags {
            let tag = tag.as_ref();
            if tag.is_empty() {
                return Err(MoergoError::InvalidIdentifier {
                    what: "public layout tag",
                    value: KeyDisplay::new(b""),
                    reason: "a tag is never empty",
                });
            }
            set.insert(tag.to_owned());
        }
        Ok(PublicLayoutTags(set))
    }

    /// No tag: every public layout.
    pub fn all() -> Self {
        PublicLayoutTags::default()
    }

    /// The tags, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether the set includes [`GLOVE80_STANDARD_TAG`], whose lists are kept longer.
    pub fn includes_glove80_standard(&self) -> bool {
        self.0.contains(GLOVE80_STANDARD_TAG)
    }
}

/// A firmware version name as the API lists it (`v25.05`): 1 to 64 of `A-Z a-z 0-9 . _ -`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FirmwareVersion(String);

impl FirmwareVersion {
    /// Checks and wraps `text`.
    pub fn new(text: &str) -> Result<Self> {
        check_identifier("firmware version", text)?;
        Ok(FirmwareVersion(text.to_owned()))
    }

    /// The version name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FirmwareVersion {
    type Error = MoergoError;

    fn try_from(text: String) -> Result<Self> {
        FirmwareVersion::new(&text)
    }
}

impl From<FirmwareVersion> for String {
    fn from(version: FirmwareVersion) -> String {
        version.0
    }
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a short name (firmware version, board): 1 to 64 of `A-Z a-z 0-9 . _ -`. Short and
/// plain on purpose: no room for a token.
pub(crate) fn check_identifier(what: &'static str, text: &str) -> Result<()> {
    let reason = if text.is_empty() || text.len() > 64 {
        Some("must be 1 to 64 characters")
    } else if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("may contain only letters, digits, '.', '_' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(MoergoError::InvalidIdentifier {
            what,
            value: KeyDisplay::new(text.as_bytes()),
            reason,
        }),
        None => Ok(()),
    }
}

/// A downloaded firmware image (already decompressed), as opaque bytes.
///
/// Serialised as one byte string rather than a sequence of numbers, so that a multi-megabyte
/// image encodes and decodes in one copy.
#[derive(Clone, PartialEq, Eq)]
pub struct FirmwareImage(Vec<u8>);

impl FirmwareImage {
    /// Wraps `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        FirmwareImage(bytes)
    }

    /// The image's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The image's bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for FirmwareImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FirmwareImage({} bytes)", self.0.len())
    }
}

impl Serialize for FirmwareImage {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for FirmwareImage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct BytesVisitor;

        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = FirmwareImage;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("firmware image bytes")
            }

            fn visit_bytes<E: de::Error>(
                self,
                bytes: &[u8],
            ) -> std::result::Result<Self::Value, E> {
                Ok(FirmwareImage(bytes.to_vec()))
            }

            fn visit_byte_buf<E: de::Error>(
                self,
                bytes: Vec<u8>,
            ) -> std::result::Result<Self::Value, E> {
                Ok(FirmwareImage(bytes))
            }

            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(byte) = seq.next_element::<u8>()? {
                    bytes.push(byte);
                }
                Ok(FirmwareImage(bytes))
            }
        }

        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::snake(r#"{"access_token": "abc"}"#)]
    #[case::cognito(r#"{"AuthenticationResult": {"AccessToken": "abc", "ExpiresIn": 3600}}"#)]
    #[case::kebab(r#"{"refresh-token":"abc"}"#)]
    #[case::nested(r#"{"meta": {"owner": {"password" : "hunter2"}}}"#)]
    #[case::plain_token(r#"{"token":"abc"}"#)]
    #[case::jwt_value(r#"{"notes": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"}"#)]
    #[case::bearer_value(r#"["Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"]"#)]
    fn credentials_are_found(#[case] json: &str) {
        assert!(find_credentials(json).is_some(), "{json}");
    }

    #[rstest]
    #[case::layout(
        r#"{"title": "token ring", "notes": "my password is not here", "tags": ["token"]}"#
    )]
    #[case::escaped_quote(r#"{"title": "a \"token\": b", "layers": [[1, 2]]}"#)]
    #[case::field_named_like_but_longer(r#"{"token_count": 3, "tokenizer": "x"}"#)]
    #[case::empty("")]
    #[case::not_json("a \" b \\")]
    fn plain_documents_pass(#[case] json: &str) {
        assert_eq!(find_credentials(json), None, "{json}");
    }

    #[test]
    fn the_refusal_never_repeats_the_secret() {
        let err = ApiDocument::new(r#"{"id_token": "s3cr3t-value"}"#).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(err.to_string().contains("id_token"), "{err}");
    }
}
