//! The gateway stage's measuring client: a lean RFC 6455 client, so that 10,000 of them on
//! the same two cores as the server cost the machine as little as a client can.
//!
//! tokio-tungstenite clients spent about 5 µs of CPU per message received (a frame object, a
//! UTF-8 check, waker proxies, a buffer per read); here a message costs one read into a buffer
//! that is never zero-filled and a header parse. It does what a client must: the handshake
//! with its accept-key check, text and binary frames split across reads or several in one
//! read, a pong for every ping, and it stops at a close frame.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A connected client: its socket and whatever arrived after the handshake response.
pub(crate) struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

/// Opens `path` on `127.0.0.1:port` as a WebSocket.
pub(crate) async fn connect(port: u16, path: &str) -> anyhow::Result<Client> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        anyhow::ensure!(
            stream.read_buf(&mut buf).await? > 0,
            "closed during the handshake"
        );
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    anyhow::ensure!(
        head.starts_with("http/1.1 101"),
        "the upgrade was refused: {head}"
    );
    let accept = format!(
        "sec-websocket-accept: {}",
        derive_accept_key(KEY.as_bytes()).to_ascii_lowercase()
    );
    anyhow::ensure!(head.contains(&accept), "wrong Sec-WebSocket-Accept");
    buf.advance(end);
    Ok(Client { stream, buf })
}

impl Client {
    /// Calls `on_message` with each text or binary message's payload until the server closes
    /// the connection (Ok) or breaks the protocol (Err).
    pub(crate) async fn run(mut self, mut on_message: impl FnMut(&[u8])) -> anyhow::Result<()> {
        loop {
            while let Some((opcode, header, len)) = frame(&self.buf)? {
                let payload = &self.buf[header..header + len];
                match opcode {
                    0x1 | 0x2 => on_message(payload),
                    0x8 => return Ok(()),
                    // A pong carries the ping's payload, masked (a zero key leaves it as is).
                    0x9 => {
                        let mut pong = vec![0x8A, 0x80 | len as u8, 0, 0, 0, 0];
                        pong.extend_from_slice(payload);
                        self.stream.write_all(&pong).await?;
                    }
                    _ => {}
                }
                self.buf.advance(header + len);
            }
            self.buf.reserve(4096);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(());
            }
        }
    }
}

/// The opcode, header length and payload length of the whole frame at the start of `buf`,
/// or None while it has not all arrived. Server frames are unmasked and not fragmented here.
fn frame(buf: &[u8]) -> anyhow::Result<Option<(u8, usize, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    anyhow::ensure!(buf[1] & 0x80 == 0, "a server frame was masked");
    let (header, len) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
        127 if buf.len() >= 10 => (
            10,
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize,
        ),
        126 | 127 => return Ok(None),
        n => (2, n as usize),
    };
    Ok((buf.len() >= header + len).then_some((buf[0] & 0x0F, header, len)))
}

#[cfg(test)]
mod tests {
    use super::frame;

    #[test]
    fn frames_are_found_whole_or_not_at_all() {
        let mut f = vec![0x81, 126, 0, 200];
        f.extend(std::iter::repeat_n(b'x', 200));
        assert_eq!(frame(&f).unwrap(), Some((1, 4, 200)));
        assert_eq!(frame(&f[..150]).unwrap(), None);
        assert_eq!(frame(&[0x89, 0]).unwrap(), Some((9, 2, 0)));
        assert!(frame(&[0x81, 0x85]).is_err());
    }
}
