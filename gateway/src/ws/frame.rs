//! RFC 6455 frames as the gateway needs them: server frames encoded once and shared by every
//! client ([`text`], [`close`], ...), and client frames read and put back together into
//! messages ([`Decoder`]) under the rules a server must enforce: frames masked, no reserved
//! bits or opcodes, control frames short and whole, fragments in order, text in UTF-8, and the
//! size limit checked from the header, before the payload is read.

use std::io::Cursor;

use bytes::{Buf, Bytes, BytesMut};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// One whole, unmasked server frame.
fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let len = payload.len() as u64;
    let mut out = Vec::with_capacity(header.len(len) + payload.len());
    // Writing to a Vec cannot fail.
    let _ = header.format(len, &mut out);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// A text message in one frame.
pub(crate) fn text(payload: &str) -> Bytes {
    encode(OpCode::Data(Data::Text), payload.as_bytes())
}

/// A close frame with its code and reason.
pub(crate) fn close(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    encode(OpCode::Control(Control::Close), &payload)
}

/// A close frame without a code (the answer to a client's close that had none).
pub(crate) fn close_empty() -> Bytes {
    encode(OpCode::Control(Control::Close), &[])
}

pub(crate) fn ping() -> Bytes {
    encode(OpCode::Control(Control::Ping), &[])
}

pub(crate) fn pong(payload: &[u8]) -> Bytes {
    encode(OpCode::Control(Control::Pong), payload)
}

/// A whole message from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    Text(String),
    Binary,
    Ping(Bytes),
    Pong,
    /// The client closes, with its code if it gave one.
    Close(Option<u16>),
}

/// Why the client's bytes end the connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A message over the size limit (close code 1009).
    TooBig,
    /// Text that is not UTF-8 (1007).
    NotUtf8,
    /// Anything else the protocol forbids (1002).
    Protocol(&'static str),
}

/// Puts a client's frames back together into messages.
#[derive(Debug)]
pub(crate) struct Decoder {
    max_message: usize,
    /// The fragments so far of a message sent in several frames, and whether it is text.
    partial: Option<(bool, Vec<u8>)>,
}

impl Decoder {
    pub(crate) fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            partial: None,
        }
    }

    /// The next whole message at the start of `buf` (its frames are consumed), None while
    /// more bytes are needed.
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, Violation> {
        loop {
            // tungstenite's parser refuses only reserved opcodes.
            let mut cursor = Cursor::new(&buf[..]);
            let Some((header, len)) = FrameHeader::parse(&mut cursor)
                .map_err(|_| Violation::Protocol("reserved opcode"))?
            else {
                return Ok(None);
            };
            let head = cursor.position() as usize;
            self.check(&header, len)?;
            let len = len as usize;
            if buf.len() < head + len {
                buf.reserve(head + len - buf.len());
                return Ok(None);
            }
            // `check` refused unmasked frames.
            let mask = header.mask.unwrap_or_default();
            buf.advance(head);
            let mut payload = buf.split_to(len);
            unmask(&mut payload, mask);
            match header.opcode {
                OpCode::Control(Control::Close) => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Ok(Some(Incoming::Close(code)));
                }
                OpCode::Control(Control::Ping) => {
                    return Ok(Some(Incoming::Ping(payload.freeze())));
                }
                OpCode::Control(_) => return Ok(Some(Incoming::Pong)),
                OpCode::Data(data) => {
                    let (is_text, body) = match (data, self.partial.take()) {
                        (Data::Continue, Some((is_text, mut body))) => {
                            body.extend_from_slice(&payload);
                            (is_text, body)
                        }
                        (_, _) => (data == Data::Text, payload.to_vec()),
                    };
                    if !header.is_final {
                        self.partial = Some((is_text, body));
                        continue;
                    }
                    if !is_text {
                        return Ok(Some(Incoming::Binary));
                    }
                    return String::from_utf8(body)
                        .map(|t| Some(Incoming::Text(t)))
                        .map_err(|_| Violation::NotUtf8);
                }
            }
        }
    }

    /// The rules a frame's header alone can break, checked before its payload is read.
    fn check(&self, header: &FrameHeader, len: u64) -> Result<(), Violation> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(Violation::Protocol("reserved bits set"));
        }
        if header.mask.is_none() {
            return Err(Violation::Protocol("a client frame must be masked"));
        }
        match header.opcode {
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                Err(Violation::Protocol("reserved opcode"))
            }
            OpCode::Control(_) if !header.is_final || len > 125 => Err(Violation::Protocol(
                "a control frame must be whole and short",
            )),
            OpCode::Control(_) => Ok(()),
            OpCode::Data(Data::Continue) if self.partial.is_none() => {
                Err(Violation::Protocol("a continuation without a message"))
            }
            OpCode::Data(Data::Text | Data::Binary) if self.partial.is_some() => {
                Err(Violation::Protocol("a new message inside a fragmented one"))
            }
            OpCode::Data(_) => {
                let so_far = self.partial.as_ref().map_or(0, |(_, b)| b.len()) as u64;
                if so_far.saturating_add(len) > self.max_message as u64 {
                    Err(Violation::TooBig)
                } else {
                    Ok(())
                }
            }
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked with a fixed key.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    fn decode(bytes: &[u8], max: usize) -> Vec<Result<Incoming, Violation>> {
        let mut d = Decoder::new(max);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match d.next(&mut buf) {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    #[test]
    fn whole_and_fragmented_messages_are_assembled() {
        let mut bytes = client_frame(0x81, b"hello");
        bytes.extend(client_frame(0x01, b"hel"));
        bytes.extend(client_frame(0x89, b"p")); // a ping between fragments is allowed
        bytes.extend(client_frame(0x80, b"lo!"));
        bytes.extend(client_frame(0x88, &1000u16.to_be_bytes()));
        assert_eq!(
            decode(&bytes, 100),
            [
                Ok(Incoming::Text("hello".into())),
                Ok(Incoming::Ping(Bytes::from_static(b"p"))),
                Ok(Incoming::Text("hello!".into())),
                Ok(Incoming::Close(Some(1000))),
            ]
        );
    }

    #[test]
    fn a_frame_split_across_reads_waits_for_the_rest() {
        let bytes = client_frame(0x81, &[b'a'; 300]);
        let mut d = Decoder::new(1000);
        let mut buf = BytesMut::from(&bytes[..150]);
        assert_eq!(d.next(&mut buf), Ok(None));
        buf.extend_from_slice(&bytes[150..]);
        assert_eq!(d.next(&mut buf), Ok(Some(Incoming::Text("a".repeat(300)))));
        assert!(buf.is_empty());
    }

    #[test]
    fn the_size_limit_is_checked_from_the_header() {
        // Only the header of a 10,000-byte frame has arrived.
        let header = &client_frame(0x82, &[0; 10_000])[..8];
        assert_eq!(decode(header, 4096), [Err(Violation::TooBig)]);
        // Fragments count together.
        let mut bytes = client_frame(0x01, &[b'a'; 100]);
        bytes.extend(client_frame(0x80, &[b'a'; 100]));
        assert_eq!(decode(&bytes, 150), [Err(Violation::TooBig)]);
    }

    #[test]
    fn what_the_protocol_forbids_is_refused() {
        let unmasked = [0x81, 0x02, b'h', b'i'];
        let cases: [(&[u8], &str); 5] = [
            (&unmasked, "a client frame must be masked"),
            (&client_frame(0xC1, b"x"), "reserved bits set"),
            (&client_frame(0x83, b"x"), "reserved opcode"),
            (
                &client_frame(0x80, b"x"),
                "a continuation without a message",
            ),
            (
                &client_frame(0x09, b"x"),
                "a control frame must be whole and short",
            ),
        ];
        for (bytes, why) in cases {
            assert_eq!(decode(bytes, 100), [Err(Violation::Protocol(why))], "{why}");
        }
        let mut nested = client_frame(0x01, b"a");
        nested.extend(client_frame(0x81, b"b"));
        assert_eq!(
            decode(&nested, 100),
            [Err(Violation::Protocol(
                "a new message inside a fragmented one"
            ))]
        );
        assert_eq!(
            decode(&client_frame(0x81, &[0xFF, 0xFE]), 100),
            [Err(Violation::NotUtf8)]
        );
    }

    #[test]
    fn server_frames_are_unmasked_with_the_shortest_length() {
        assert_eq!(&text("hi")[..], &[0x81, 2, b'h', b'i']);
        let long = text(&"x".repeat(300));
        assert_eq!(&long[..4], &[0x81, 126, 1, 44]);
        assert_eq!(&close(4001, "slow")[..4], &[0x88, 6, 0x0F, 0xA1]);
        assert_eq!(&ping()[..], &[0x89, 0]);
    }
}
