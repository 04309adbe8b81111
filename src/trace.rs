//! Trace context: the W3C `traceparent` a registration arrives with (or the X-Ray trace id
//! Lambda hands it), carried to the participant's Kafka message as a new span of the same
//! trace (CloudEvents' distributed-tracing extension).
//!
//! Written here rather than taken from `opentelemetry`'s propagator: the format is one line of
//! fixed-width hex (W3C Trace Context, level 1), and the OpenTelemetry SDK would pull an
//! exporter pipeline into every Lambda for a header we only parse, rewrite and pass on.

use std::fmt;

/// A position in a distributed trace: a `traceparent` header's fields (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace's 16-byte id; never all zero.
    pub trace_id: [u8; 16],
    /// The span this context points at (the caller's, or ours once [`TraceContext::child`]
    /// made one); never all zero.
    pub span_id: [u8; 8],
    /// The trace flags; bit 0 is "sampled".
    pub flags: u8,
}

/// Why a header is not a trace context. Callers start a new trace instead: a bad header must
/// not fail a registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadTraceHeader {
    /// Not `00-<32 hex>-<16 hex>-<2 hex>` (or a later version's longer form).
    #[error("not a W3C traceparent (version-traceid-parentid-flags in lower-case hex)")]
    Format,
    /// The version is `ff`, which the W3C forbids.
    #[error("traceparent version ff is invalid")]
    Version,
    /// An all-zero trace or parent id.
    #[error("traceparent with an all-zero trace id or parent id")]
    ZeroId,
    /// An `X-Amzn-Trace-Id` without a `Root=1-<8 hex>-<24 hex>` field.
    #[error("not an X-Ray trace header (Root=1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx)")]
    XRay,
}

impl TraceContext {
    /// Parses a W3C `traceparent` value. Accepts version 00, and a later version's first four
    /// fields when more follow (as the W3C asks a version-00 reader to); refuses upper-case
    /// hex, version `ff` and all-zero ids.
    pub fn from_traceparent(header: &str) -> Result<Self, BadTraceHeader> {
        let header = header.trim();
        let mut fields = header.split('-');
        let (Some(version), Some(trace), Some(span), Some(flags)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(BadTraceHeader::Format);
        };
        let version = hex::<1>(version).ok_or(BadTraceHeader::Format)?[0];
        if version == 0xff {
            return Err(BadTraceHeader::Version);
        }
        if version == 0 && fields.next().is_some() {
            return Err(BadTraceHeader::Format);
        }
        let context = TraceContext {
            trace_id: hex(trace).ok_or(BadTraceHeader::Format)?,
            span_id: hex(span).ok_or(BadTraceHeader::Format)?,
            flags: hex::<1>(flags).ok_or(BadTraceHeader::Format)?[0],
        };
        if context.trace_id == [0; 16] || context.span_id == [0; 8] {
            return Err(BadTraceHeader::ZeroId);
        }
        Ok(context)
    }

    /// Reads the trace an `X-Amzn-Trace-Id` value names
    /// (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`): an
    /// X-Ray trace id is a W3C trace id written as `1-<first 8 hex>-<last 24 hex>`. Without a
    /// `Parent`, the span id is a new one; `Sampled=1` sets the sampled flag.
    pub fn from_xray(header: &str) -> Result<Self, BadTraceHeader> {
        let field = |name: &str| {
            header
                .split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v)
        };
        let root = field("Root").ok_or(BadTraceHeader::XRay)?;
        let mut parts = root.split('-');
        let (Some("1"), Some(time), Some(rest), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BadTraceHeader::XRay);
        };
        if time.len() != 8 || rest.len() != 24 {
            return Err(BadTraceHeader::XRay);
        }
        let trace_id =
            hex(&format!("{time}{rest}").to_ascii_lowercase()).ok_or(BadTraceHeader::XRay)?;
        let span_id = match field("Parent") {
            Some(parent) => hex(&parent.to_ascii_lowercase()).ok_or(BadTraceHeader::XRay)?,
            None => new_span_id(),
        };
        if trace_id == [0; 16] || span_id == [0; 8] {
            return Err(BadTraceHeader::ZeroId);
        }
        Ok(TraceContext {
            trace_id,
            span_id,
            flags: u8::from(field("Sampled") == Some("1")),
        })
    }

    /// A new trace (random trace and span ids), sampled: started where nothing upstream sent
    /// one (a participant written straight into the table, a request without a header).
    pub fn new_root() -> Self {
        let trace_id = *uuid::Uuid::new_v4().as_bytes();
        TraceContext {
            trace_id,
            span_id: new_span_id(),
            flags: 1,
        }
    }

    /// The same trace, with a new span id of ours whose parent is this context's span: what
    /// we pass on downstream.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: new_span_id(),
            ..*self
        }
    }

    /// The trace id as 32 lower-case hex digits (what log lines carry).
    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }
}

/// The `traceparent` header value, version 00.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            to_hex(&self.trace_id),
            to_hex(&self.span_id),
            self.flags
        )
    }
}

/// A random, non-zero 8-byte span id.
fn new_span_id() -> [u8; 8] {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

/// `N` bytes from exactly `2N` lower-case hex digits.
fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const W3C_EXAMPLE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_w3c_traceparent_round_trips() {
        let context = TraceContext::from_traceparent(W3C_EXAMPLE).unwrap();
        assert_eq!(context.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(context.flags, 1);
        assert_eq!(context.to_string(), W3C_EXAMPLE);
    }

    #[test]
    fn a_child_keeps_the_trace_and_gets_a_new_span() {
        let parent = TraceContext::from_traceparent(W3C_EXAMPLE).unwrap();
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_eq!(child.flags, parent.flags);
        assert_ne!(child.span_id, parent.span_id);
        assert_ne!(child.span_id, [0; 8]);
        assert_eq!(
            TraceContext::from_traceparent(&child.to_string()),
            Ok(child)
        );
    }

    #[test]
    fn bad_traceparents_are_refused() {
        let cases = [
            ("", BadTraceHeader::Format),
            (
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
                BadTraceHeader::Format,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
                BadTraceHeader::Format,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
                BadTraceHeader::Format,
            ),
            (
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                BadTraceHeader::Version,
            ),
            (
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                BadTraceHeader::ZeroId,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                BadTraceHeader::ZeroId,
            ),
        ];
        for (header, error) in cases {
            assert_eq!(
                TraceContext::from_traceparent(header),
                Err(error),
                "{header:?}"
            );
        }
    }

    #[test]
    fn a_later_version_is_read_for_its_first_fields() {
        let later = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future";
        let context = TraceContext::from_traceparent(later).unwrap();
        assert_eq!(context.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
    }

    #[test]
    fn an_xray_header_names_the_same_trace() {
        let context = TraceContext::from_xray(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .unwrap();
        assert_eq!(context.trace_id_hex(), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(
            context.to_string(),
            "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
        );
        let unsampled =
            TraceContext::from_xray("Root=1-5759e988-bd862e3fe1be46a994272793").unwrap();
        assert_eq!(unsampled.flags, 0);
        assert_ne!(unsampled.span_id, [0; 8]);
        assert_eq!(
            TraceContext::from_xray("Self=1-abc"),
            Err(BadTraceHeader::XRay)
        );
        assert_eq!(
            TraceContext::from_xray("Root=1-5759e988-bd862e3f"),
            Err(BadTraceHeader::XRay)
        );
    }

    #[test]
    fn a_new_root_is_a_valid_sampled_trace() {
        let root = TraceContext::new_root();
        assert_eq!(root.flags, 1);
        assert_eq!(TraceContext::from_traceparent(&root.to_string()), Ok(root));
        assert_ne!(root.trace_id, TraceContext::new_root().trace_id);
    }
}
