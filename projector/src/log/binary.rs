//! The rows of a binary `COPY … TO STDOUT`, walked in place: a rebuild reads ten million
//! events this way without building a `tokio_postgres::Row` for each (dropping those was 7 %
//! of a rebuild's samples in `perf`).
//!
//! The format (PostgreSQL's `COPY` documentation): a 19-byte header (signature, flags, header
//! extension length 0), then per row a 16-bit field count and per field a 32-bit length (-1
//! for NULL) and its bytes, and a field count of -1 at the end.

use crate::Error;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
const HEADER: usize = 19;

/// Splits a binary `COPY` stream, fed in chunks cut anywhere, into rows of `N` fields.
#[derive(Debug, Default)]
pub struct BinaryRows {
    /// The end of the last chunk, when it cut a row.
    pending: Vec<u8>,
    header_read: bool,
    ended: bool,
}

impl BinaryRows {
    /// Calls `row` with the fields (`None` for NULL) of every whole row that `chunk` completes.
    pub fn feed<const N: usize>(
        &mut self,
        chunk: &[u8],
        mut row: impl FnMut(&[Option<&[u8]>; N]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        // PostgreSQL sends a row per message, so the pending bytes are nearly always empty and
        // the chunk is walked where it lies.
        if self.pending.is_empty() {
            let used = self.walk(chunk, &mut row)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(chunk);
            let used = self.walk(&pending, &mut row)?;
            pending.drain(..used);
            self.pending = pending;
        }
        Ok(())
    }

    /// Checks that the stream ended where it should: with its trailer, nothing after it.
    pub fn finish(self) -> Result<(), Error> {
        if self.ended && self.pending.is_empty() {
            Ok(())
        } else {
            Err(malformed(
                "the stream ended inside a row or before its trailer",
            ))
        }
    }

    /// Walks the whole rows at the start of `buf`; returns how many bytes they took.
    fn walk<const N: usize>(
        &mut self,
        buf: &[u8],
        row: &mut impl FnMut(&[Option<&[u8]>; N]) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let mut at = 0;
        if !self.header_read {
            if buf.len() < HEADER {
                return Ok(0);
            }
            if !buf.starts_with(SIGNATURE) || buf[15..HEADER] != [0, 0, 0, 0] {
                return Err(malformed("not a binary COPY header without extensions"));
            }
            at = HEADER;
            self.header_read = true;
        }
        while let Some(count) = buf.get(at..at + 2) {
            if self.ended {
                return Err(malformed("bytes after the trailer"));
            }
            let count = i16::from_be_bytes([count[0], count[1]]);
            if count == -1 {
                self.ended = true;
                at += 2;
                continue;
            }
            if usize::try_from(count).ok() != Some(N) {
                return Err(malformed(&format!("a row of {count} fields, expected {N}")));
            }
            let mut fields = [None; N];
            let mut end = at + 2;
            for field in &mut fields {
                let Some(len) = buf.get(end..end + 4) else {
                    return Ok(at);
                };
                let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                end += 4;
                if len >= 0 {
                    let Some(bytes) = buf.get(end..end + len as usize) else {
                        return Ok(at);
                    };
                    *field = Some(bytes);
                    end += len as usize;
                }
            }
            row(&fields)?;
            at = end;
        }
        Ok(at)
    }
}

pub(crate) fn malformed(what: &str) -> Error {
    Error::CopyFormat(what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Vec<u8> {
        let mut s = SIGNATURE.to_vec();
        s.extend([0, 0, 0, 0, 0, 0, 0, 0]);
        for value in [&b"ab"[..], b"", b"xyz"] {
            s.extend(2i16.to_be_bytes());
            s.extend(i32::try_from(value.len()).unwrap().to_be_bytes());
            s.extend(value);
            s.extend((-1i32).to_be_bytes()); // NULL
        }
        s.extend((-1i16).to_be_bytes());
        s
    }

    #[test]
    fn rows_are_walked_alike_across_any_chunking() {
        let stream = stream();
        for size in 1..=stream.len() {
            let mut rows = BinaryRows::default();
            let mut seen = Vec::new();
            for chunk in stream.chunks(size) {
                rows.feed(chunk, |f: &[Option<&[u8]>; 2]| {
                    seen.push((f[0].map(<[u8]>::to_vec), f[1].is_none()));
                    Ok(())
                })
                .unwrap();
            }
            rows.finish().unwrap();
            let want = [b"ab".to_vec(), vec![], b"xyz".to_vec()]
                .map(|v| (Some(v), true))
                .to_vec();
            assert_eq!(seen, want, "chunks of {size} bytes");
        }
    }

    #[test]
    fn a_cut_stream_or_a_wrong_row_is_an_error() {
        let stream = stream();
        let mut rows = BinaryRows::default();
        rows.feed(&stream[..stream.len() - 5], |_: &[Option<&[u8]>; 2]| Ok(()))
            .unwrap();
        assert!(rows.finish().is_err(), "no trailer");
        let mut rows = BinaryRows::default();
        let wrong = rows.feed(&stream, |_: &[Option<&[u8]>; 3]| Ok(()));
        assert!(wrong.is_err(), "two fields where three were expected");
        let mut rows = BinaryRows::default();
        assert!(
            rows.feed(
                b"PGCOPY\n\xff\r\n\0XXXXXXXXXX",
                |_: &[Option<&[u8]>; 2]| Ok(())
            )
            .is_err(),
            "a header with an extension area"
        );
    }
}
