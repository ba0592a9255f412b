//! Standard base64 (RFC 4648 §4, padded) with Go's `encoding/base64.StdEncoding` decoding rules:
//! `\r` and `\n` are skipped, padding is required, and a failure reports the byte offset Go
//! reports — Secret `data` values are decoded by Go's JSON decoder, and clients see its error
//! text (`illegal base64 data at input byte N`) in the 400 answer.
//! Hand-written (as `time.rs` is) to keep the crate's dependencies to what serving needs.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((v >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn skip_newlines(src: &[u8], mut si: usize) -> usize {
    while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
        si += 1;
    }
    si
}

/// Decodes; `Err(offset)` is Go's `CorruptInputError` (the offset of the offending byte).
/// Follows `decodeQuantum` case by case.
pub fn decode(src: &[u8]) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    loop {
        let mut quantum = [0u8; 4];
        let mut len = 4;
        let mut j = 0;
        let mut last = false;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                // padding is required: a short final quantum is corrupt
                return Err(si - j);
            }
            let c = src[si];
            si += 1;
            if let Some(v) = value(c) {
                quantum[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Err(si - 1);
            }
            match j {
                0 | 1 => return Err(si - 1),
                2 => {
                    // "==" expected; the first '=' is consumed
                    si = skip_newlines(src, si);
                    if si == src.len() {
                        return Err(src.len());
                    }
                    if src[si] != b'=' {
                        return Err(si - 1);
                    }
                    si += 1;
                }
                _ => {}
            }
            si = skip_newlines(src, si);
            if si < src.len() {
                return Err(si);
            }
            len = j;
            last = true;
            break;
        }
        let v = (u32::from(quantum[0]) << 18)
            | (u32::from(quantum[1]) << 12)
            | (u32::from(quantum[2]) << 6)
            | u32::from(quantum[3]);
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..len - 1]);
        if last {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "\u{0}\u{ff}é"] {
            let e = encode(s.as_bytes());
            assert_eq!(decode(e.as_bytes()), Ok(s.as_bytes().to_vec()), "{s:?} -> {e}");
        }
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(decode(b"Zm9v\nYmFy\r\n"), Ok(b"foobar".to_vec()));
    }

    #[test]
    fn go_error_offsets() {
        // as `base64.StdEncoding.DecodeString` reports them
        assert_eq!(decode(b"Zm9v!"), Err(4));
        assert_eq!(decode(b"Zm8"), Err(0));
        assert_eq!(decode(b"Zm9vY"), Err(4));
        assert_eq!(decode(b"Zg="), Err(3));
        assert_eq!(decode(b"Z==="), Err(1));
        assert_eq!(decode(b"Zm8=Zm8="), Err(4));
        assert_eq!(decode(b"not base64"), Err(3));
    }
}
