//! Passthrough of the AV1 Dependency Descriptor RTP header extension. Chrome
//! sends AV1 (and VP9) SVC only when it is negotiated, and receivers use it to
//! assemble scalable frames; the SFU forwards it untouched.

use str0m::rtp::{Extension, ExtensionSerializer, ExtensionValues};

/// The extension's URI.
pub const URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";
/// The id we offer it under (free in str0m's default map).
pub const ID: u8 = 12;

/// The descriptor's raw bytes, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyDescriptor(pub Vec<u8>);

#[derive(Debug)]
struct Passthrough;

impl ExtensionSerializer for Passthrough {
    fn write_to(&self, buf: &mut [u8], ev: &ExtensionValues) -> usize {
        let Some(dd) = ev.user_values.get::<DependencyDescriptor>() else {
            return 0;
        };
        if buf.len() < dd.0.len() {
            return 0;
        }
        buf[..dd.0.len()].copy_from_slice(&dd.0);
        dd.0.len()
    }

    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        if buf.is_empty() {
            return false;
        }
        ev.user_values.set(DependencyDescriptor(buf.to_vec()));
        true
    }

    fn is_video(&self) -> bool {
        true
    }

    fn is_audio(&self) -> bool {
        false
    }

    fn requires_two_byte_form(&self, ev: &ExtensionValues) -> bool {
        ev.user_values
            .get::<DependencyDescriptor>()
            .is_some_and(|d| d.0.len() > 16)
    }
}

pub fn extension() -> Extension {
    Extension::with_serializer(URI, Passthrough)
}
