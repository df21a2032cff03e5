//! The session's outgoing frames, written straight from their shared bytes with vectored writes.
//!
//! An event frame is encoded once and shared by every subscriber (`hub::EncodedEvent`). Written through
//! tungstenite, each session copied it into its own buffer, which writes itself out whenever it holds more than
//! its threshold (so a session behind by many events wrote them a few at a time, a `sendto` each) and keeps the
//! capacity it grew to. Here a flush is one `writev` of each frame's header and its shared payload, however many
//! frames are pending (up to `MAX_SLICES` at a time), and nothing is copied. Server frames are unmasked (RFC 6455,
//! section 5.1), so a header is the opcode byte and the length. tungstenite still reads the socket, answers pings
//! and sends the close frame; the shell writes these frames only once tungstenite's own buffer is flushed, and
//! polls it to read only once these are written, so the two never interleave on the wire.

use std::{
    collections::VecDeque,
    io::{self, IoSlice},
    pin::Pin,
    task::{ready, Context, Poll},
};

use tokio::io::AsyncWrite;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Header and payload slices per `writev`: 32 frames, well under every system's `IOV_MAX`.
const MAX_SLICES: usize = 64;
/// A queue that grew past this many frames (a burst) is let go once written, so an idle session keeps little.
const KEPT_CAPACITY: usize = 16;

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_PING: u8 = 0x9;
const FIN: u8 = 0x80;

struct Frame {
    header: [u8; 10],
    header_len: u8,
    payload: Utf8Bytes,
}

impl Frame {
    fn new(opcode: u8, payload: Utf8Bytes) -> Self {
        let mut header = [0u8; 10];
        header[0] = FIN | opcode;
        let len = payload.len();
        let header_len = if len < 126 {
            header[1] = len as u8;
            2
        } else if let Ok(len) = u16::try_from(len) {
            header[1] = 126;
            header[2..4].copy_from_slice(&len.to_be_bytes());
            4
        } else {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        Self { header, header_len, payload }
    }

    fn len(&self) -> usize {
        usize::from(self.header_len) + self.payload.len()
    }
}

/// Frames waiting to be written, in order, and how much of the first one the socket has taken.
#[derive(Default)]
pub struct Frames {
    queue: VecDeque<Frame>,
    written: usize,
}

impl Frames {
    pub fn push_text(&mut self, text: Utf8Bytes) {
        self.queue.push_back(Frame::new(OPCODE_TEXT, text));
    }

    pub fn push_ping(&mut self) {
        self.queue.push_back(Frame::new(OPCODE_PING, Utf8Bytes::default()));
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Writes every queued frame; `Ready(Ok)` once the socket has taken them all.
    pub fn poll_write<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.queue.is_empty() {
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut used = 0;
                let mut skip = self.written;
                for frame in &self.queue {
                    if used + 2 > MAX_SLICES {
                        break;
                    }
                    for part in [&frame.header[..usize::from(frame.header_len)], frame.payload.as_bytes()] {
                        if skip >= part.len() {
                            skip -= part.len();
                            continue;
                        }
                        slices[used] = IoSlice::new(&part[skip..]);
                        skip = 0;
                        used += 1;
                    }
                }
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..used]))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(written);
        }
        if self.queue.capacity() > KEPT_CAPACITY {
            self.queue = VecDeque::new();
        }
        Pin::new(io).poll_flush(cx)
    }

    /// Drops what the socket took: whole frames from the front, then part of the next.
    fn advance(&mut self, mut written: usize) {
        while let Some(frame) = self.queue.front() {
            let left = frame.len() - self.written;
            if written < left {
                self.written += written;
                return;
            }
            written -= left;
            self.written = 0;
            self.queue.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite_reader::read_frames;

    /// A writer that takes at most `step` bytes per call, to exercise partial writes.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            self.calls += 1;
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            slices: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut room = self.step;
            let mut taken = 0;
            for slice in slices {
                let n = slice.len().min(room);
                self.out.extend_from_slice(&slice[..n]);
                room -= n;
                taken += n;
                if room == 0 {
                    break;
                }
            }
            self.calls += 1;
            Poll::Ready(Ok(taken))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn write_all(frames: &mut Frames, io: &mut Trickle) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(frames.poll_write(io, &mut cx), Poll::Ready(Ok(()))));
        assert!(frames.is_empty());
    }

    fn texts() -> Vec<String> {
        // Lengths on each side of the 7-bit and 16-bit length encodings.
        [0, 1, 125, 126, 127, 65535, 65536, 70000].iter().map(|&n| "x".repeat(n)).collect()
    }

    /// Parses server frames the way a client does (tungstenite's own frame reader), so the headers are checked
    /// by an implementation other than the one that wrote them.
    mod tungstenite_reader {
        use tokio_tungstenite::tungstenite::protocol::frame::{coding::OpCode, FrameSocket};

        pub fn read_frames(bytes: Vec<u8>) -> Vec<(OpCode, Vec<u8>)> {
            let mut socket = FrameSocket::new(std::io::Cursor::new(bytes));
            let mut frames = Vec::new();
            while let Some(frame) = socket.read(None).expect("a well-formed frame") {
                assert!(frame.header().is_final);
                assert!(frame.header().mask.is_none(), "server frames are not masked");
                frames.push((frame.header().opcode, frame.into_payload().to_vec()));
            }
            frames
        }
    }

    #[test]
    fn frames_of_every_length_come_out_whole_and_in_order_through_partial_writes() {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
        for step in [1, 3, 7, 1000, usize::MAX] {
            let mut frames = Frames::default();
            for text in texts() {
                frames.push_text(Utf8Bytes::from(text));
            }
            frames.push_ping();
            let mut io = Trickle { out: Vec::new(), step, calls: 0 };
            write_all(&mut frames, &mut io);
            let read = read_frames(io.out);
            let mut expected: Vec<_> =
                texts().into_iter().map(|text| (OpCode::Data(Data::Text), text.into_bytes())).collect();
            expected.push((OpCode::Control(Control::Ping), Vec::new()));
            assert_eq!(read, expected, "step {step}");
        }
    }

    #[test]
    fn many_frames_go_out_in_few_writes() {
        let mut frames = Frames::default();
        for i in 0..100 {
            frames.push_text(Utf8Bytes::from(format!("event {i}")));
        }
        let mut io = Trickle { out: Vec::new(), step: usize::MAX, calls: 0 };
        write_all(&mut frames, &mut io);
        assert_eq!(io.calls, 4, "32 frames per writev");
        assert_eq!(read_frames(io.out).len(), 100);
    }
}
