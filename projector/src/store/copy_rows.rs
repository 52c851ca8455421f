//! Rows in PostgreSQL's binary `COPY` format, encoded straight into large chunks.
//!
//! tokio-postgres's `BinaryCopyInWriter` takes each row as a slice of `&dyn ToSql` and hands
//! the connection a message every 4 KiB: for a rebuild's 3.2 million carts, a vector and a
//! dozen dynamic calls per row and 100,000 messages. Here each field is written in place
//! and the connection gets a chunk per [`CHUNK_BYTES`], which PostgreSQL parses while the
//! next one is encoded. The format: a signature and two zero words, then per row a field
//! count and each field as a length and its binary value (`*_send`), then -1.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::SinkExt;
use tokio_postgres::CopyInSink;
use tokio_postgres::types::{ToSql, Type};

use crate::Error;
use crate::cents::Cents;

/// A chunk handed to the connection at a time.
const CHUNK_BYTES: usize = 1 << 20;
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01 UTC.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

pub(super) struct CopyRows {
    buf: BytesMut,
}

impl CopyRows {
    pub(super) fn new() -> CopyRows {
        let mut buf = BytesMut::with_capacity(CHUNK_BYTES + 4096);
        buf.put_slice(SIGNATURE);
        buf.put_i32(0); // flags
        buf.put_i32(0); // header extension length
        CopyRows { buf }
    }

    /// Starts a row of `fields` fields.
    pub(super) fn row(&mut self, fields: i16) {
        self.buf.put_i16(fields);
    }

    pub(super) fn text(&mut self, s: &str) {
        self.buf.put_i32(s.len() as i32);
        self.buf.put_slice(s.as_bytes());
    }

    pub(super) fn int8(&mut self, v: i64) {
        self.buf.put_i32(8);
        self.buf.put_i64(v);
    }

    pub(super) fn int4(&mut self, v: i32) {
        self.buf.put_i32(4);
        self.buf.put_i32(v);
    }

    pub(super) fn timestamptz(&mut self, t: DateTime<Utc>) {
        self.int8(t.timestamp_micros() - PG_EPOCH_MICROS);
    }

    pub(super) fn opt_timestamptz(&mut self, t: Option<DateTime<Utc>>) {
        match t {
            Some(t) => self.timestamptz(t),
            None => self.buf.put_i32(-1),
        }
    }

    pub(super) fn numeric(&mut self, c: Cents) {
        let at = self.buf.len();
        self.buf.put_i32(0);
        // Cents' encoder cannot fail: it writes a fixed layout for any i64.
        let _ = c.to_sql(&Type::NUMERIC, &mut self.buf);
        let len = (self.buf.len() - at - 4) as i32;
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Hands the chunk to the connection once it is full.
    pub(super) async fn flush_if_full(
        &mut self,
        sink: &mut std::pin::Pin<&mut CopyInSink<Bytes>>,
    ) -> Result<(), Error> {
        if self.buf.len() >= CHUNK_BYTES {
            sink.send(self.buf.split().freeze()).await?;
        }
        Ok(())
    }

    /// Sends the rest and the trailer, and ends the COPY; returns the rows PostgreSQL took.
    pub(super) async fn finish(
        mut self,
        mut sink: std::pin::Pin<&mut CopyInSink<Bytes>>,
    ) -> Result<u64, Error> {
        self.buf.put_i16(-1);
        sink.send(self.buf.split().freeze()).await?;
        Ok(sink.as_mut().finish().await?)
    }
}
