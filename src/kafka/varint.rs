//! Kafka's zigzag varints (protobuf style), as record batches use them for
//! lengths, deltas and header counts: written by [`super::produce_request`],
//! read by the fetch response reader.

/// Appends `value` zigzag-encoded.
pub fn put(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The varint at the start of `input` and how many bytes it took; `None`
/// when the input ends inside it or it is longer than 10 bytes.
pub fn read(input: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, &byte) in input.iter().take(10).enumerate() {
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(((raw >> 1) as i64 ^ -((raw & 1) as i64), i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_encoding_matches_kafka() {
        let enc = |v| {
            let mut out = vec![];
            put(&mut out, v);
            out
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(-1), [1]);
        assert_eq!(enc(1), [2]);
        assert_eq!(enc(63), [126]);
        assert_eq!(enc(64), [0x80, 1]);
        assert_eq!(enc(300), [0xd8, 0x04]);
    }

    #[test]
    fn reads_what_it_writes_and_refuses_truncated_input() {
        for v in [0, 1, -1, 300, -300, i32::MAX as i64, i64::MIN, i64::MAX] {
            let mut out = vec![];
            put(&mut out, v);
            assert_eq!(read(&out), Some((v, out.len())));
        }
        assert_eq!(read(&[0x80]), None);
        assert_eq!(read(&[0xff; 11]), None);
    }
}
