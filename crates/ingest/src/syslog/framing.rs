//! Syslog over a stream (RFC 6587, RFC 5425): messages cut out of the bytes
//! of one connection, by octet counting (`MSG-LEN SP MSG`) or by a trailing
//! line feed, chosen frame by frame from its first byte as RFC 6587 section
//! 3.4 describes (a digit: octet counting; anything else: up to the next
//! LF, one CR before it removed, as Windows senders end lines).
//!
//! Bounded: at most `max_message_bytes` of a message are held. A longer
//! message is refused and skipped (an octet-counted one by its length, a
//! line up to its LF) without closing the connection, so that one bad
//! message costs no other. Only a length field that is not one (not digits,
//! a leading zero, over nine digits, no space after it) breaks the framing
//! for good: nothing after it can be trusted to start a message, and the
//! connection is to be closed.

/// What the framer cut out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One message's bytes, without its framing.
    Message(Vec<u8>),
    /// A message refused as it was framed; the next one is read.
    Refused(FrameError),
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message is over the limit; it was skipped.
    #[error("a message of {length} bytes or more, over the limit of {limit}")]
    TooLarge { length: usize, limit: usize },
    /// An empty line (no message).
    #[error("an empty message")]
    Empty,
    /// The length field of an octet-counted frame is not one: the framing
    /// is lost, and the connection is to be closed.
    #[error("the length of an octet-counted frame is not 1 to 9 digits and a space")]
    BadLength,
    /// The stream ended inside an octet-counted frame, at least
    /// `missing` bytes short of its end.
    #[error("the stream ended {missing} bytes or more short of an octet-counted message")]
    Truncated { missing: usize },
}

/// Where the framer is between frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a frame, or inside one held in the buffer.
    Reading,
    /// Dropping the rest of an octet-counted message over the limit.
    Skipping { remaining: usize },
    /// Dropping the rest of a line over the limit, up to its LF.
    Discarding,
    /// The framing is lost: nothing more is read.
    Broken,
}

/// Cuts messages out of one connection's bytes; see the module docs.
#[derive(Debug)]
pub struct Framer {
    /// Bytes not yet cut into frames.
    buffer: Vec<u8>,
    /// How many bytes at the start of `buffer` are known to hold no LF (a
    /// line arriving in pieces is searched once, not once per piece).
    scanned: usize,
    max: usize,
    state: State,
}

/// Longest length field read: nine digits (under 1 GB).
const MAX_LENGTH_DIGITS: usize = 9;

impl Framer {
    /// A framer for messages of at most `max_message_bytes` (at least 1).
    pub fn new(max_message_bytes: usize) -> Framer {
        Framer {
            buffer: Vec::new(),
            scanned: 0,
            max: max_message_bytes.max(1),
            state: State::Reading,
        }
    }

    /// Whether the framing is lost ([`FrameError::BadLength`]).
    pub fn broken(&self) -> bool {
        self.state == State::Broken
    }

    /// Takes the next bytes of the stream; returns the frames they
    /// complete, in order.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            match self.state {
                State::Broken => return frames,
                State::Skipping { remaining } => {
                    let n = remaining.min(bytes.len());
                    bytes = &bytes[n..];
                    self.state = if n == remaining {
                        State::Reading
                    } else {
                        State::Skipping {
                            remaining: remaining - n,
                        }
                    };
                }
                State::Discarding => match bytes.iter().position(|&b| b == b'\n') {
                    Some(lf) => {
                        bytes = &bytes[lf + 1..];
                        self.state = State::Reading;
                    }
                    None => bytes = &[],
                },
                State::Reading => {
                    // Held at most: a whole message and its framing.
                    let room = (self.max + MAX_LENGTH_DIGITS + 2).saturating_sub(self.buffer.len());
                    let n = room.max(1).min(bytes.len());
                    self.buffer.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    self.cut(&mut frames);
                }
            }
        }
        frames
    }

    /// The stream has ended: what is left in the buffer, if anything. A
    /// last line without its LF is a message; an octet-counted message cut
    /// short is refused.
    pub fn end(&mut self) -> Option<Frame> {
        let rest = std::mem::take(&mut self.buffer);
        self.scanned = 0;
        match self.state {
            // (A message being skipped was refused already.)
            State::Broken | State::Discarding | State::Skipping { .. } => None,
            State::Reading if rest.is_empty() => None,
            State::Reading if rest[0].is_ascii_digit() => match octet_header(&rest) {
                Header::Frame { start, length } => Some(Frame::Refused(FrameError::Truncated {
                    missing: (start + length).saturating_sub(rest.len()),
                })),
                Header::Incomplete => Some(Frame::Refused(FrameError::Truncated { missing: 1 })),
                Header::Bad => Some(Frame::Refused(FrameError::BadLength)),
            },
            State::Reading => Some(self.line(rest)),
        }
    }

    /// A line's message: one CR before its LF removed; an empty one or
    /// one over the limit refused.
    fn line(&self, mut message: Vec<u8>) -> Frame {
        if message.last() == Some(&b'\r') {
            message.pop();
        }
        if message.is_empty() {
            Frame::Refused(FrameError::Empty)
        } else if message.len() > self.max {
            Frame::Refused(FrameError::TooLarge {
                length: message.len(),
                limit: self.max,
            })
        } else {
            Frame::Message(message)
        }
    }

    /// Cuts every whole frame out of the buffer, which then keeps only
    /// what follows them (moved once, however many frames were cut).
    fn cut(&mut self, frames: &mut Vec<Frame>) {
        let mut at = 0;
        loop {
            let rest = &self.buffer[at..];
            let Some(&first) = rest.first() else {
                break;
            };
            if first.is_ascii_digit() {
                match octet_header(rest) {
                    Header::Incomplete => break,
                    Header::Bad => {
                        frames.push(Frame::Refused(FrameError::BadLength));
                        self.lose_buffer(State::Broken);
                        return;
                    }
                    Header::Frame { start, length } if length > self.max => {
                        frames.push(Frame::Refused(FrameError::TooLarge {
                            length,
                            limit: self.max,
                        }));
                        let held = rest.len() - start;
                        if held < length {
                            self.lose_buffer(State::Skipping {
                                remaining: length - held,
                            });
                            return;
                        }
                        at += start + length;
                    }
                    Header::Frame { start, length } => {
                        if rest.len() < start + length {
                            break;
                        }
                        frames.push(Frame::Message(rest[start..start + length].to_vec()));
                        at += start + length;
                    }
                }
                self.scanned = 0;
            } else {
                match rest[self.scanned..].iter().position(|&b| b == b'\n') {
                    Some(found) => {
                        let lf = self.scanned + found;
                        frames.push(self.line(rest[..lf].to_vec()));
                        at += lf + 1;
                        self.scanned = 0;
                    }
                    None if rest.len() > self.max + 1 => {
                        frames.push(Frame::Refused(FrameError::TooLarge {
                            length: rest.len(),
                            limit: self.max,
                        }));
                        self.lose_buffer(State::Discarding);
                        return;
                    }
                    None => {
                        self.scanned = rest.len();
                        break;
                    }
                }
            }
        }
        self.buffer.drain(..at);
    }

    /// Drops what the buffer holds, going on in `state`.
    fn lose_buffer(&mut self, state: State) {
        self.buffer = Vec::new();
        self.scanned = 0;
        self.state = state;
    }
}

/// An octet-counted frame's header, read from the start of `bytes`.
enum Header {
    /// Not all of it has arrived.
    Incomplete,
    /// Not a length field.
    Bad,
    /// The message starts at `start` and is `length` bytes long.
    Frame { start: usize, length: usize },
}

fn octet_header(bytes: &[u8]) -> Header {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if bytes[0] == b'0' || digits > MAX_LENGTH_DIGITS {
        return Header::Bad;
    }
    match bytes.get(digits) {
        None => Header::Incomplete,
        Some(b' ') => {
            let length = bytes[..digits]
                .iter()
                .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
            Header::Frame {
                start: digits + 1,
                length,
            }
        }
        Some(_) => Header::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every frame of `stream` fed in pieces of the sizes `cuts` gives
    /// (cycled), then the end.
    fn frames(stream: &[u8], max: usize, cuts: &[usize]) -> Vec<Frame> {
        let mut framer = Framer::new(max);
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().cycle() {
            if at >= stream.len() {
                break;
            }
            let end = (at + cut.max(1)).min(stream.len());
            out.extend(framer.push(&stream[at..end]));
            at = end;
        }
        out.extend(framer.end());
        out
    }

    fn message(text: &[u8]) -> Frame {
        Frame::Message(text.to_vec())
    }

    #[test]
    fn both_framings_mix_on_one_connection() {
        let stream = b"<13>1 - - - - - - a\n20 <13>1 - - - - - - b\n<13>c\r\n<13>last";
        assert_eq!(
            frames(stream, 100, &[1]),
            vec![
                message(b"<13>1 - - - - - - a"),
                message(b"<13>1 - - - - - - b\n"),
                message(b"<13>c"),
                message(b"<13>last"),
            ]
        );
    }

    #[test]
    fn an_oversized_message_is_refused_and_the_next_one_read() {
        let mut stream = b"30 ".to_vec();
        stream.extend_from_slice(&[b'x'; 30]);
        stream.extend_from_slice(b"3 <1>");
        stream.extend_from_slice(&[b'y'; 40]);
        stream.extend_from_slice(b"\n<2>ok\n");
        for cuts in [&[1usize][..], &[7], &[1000]] {
            let got = frames(&stream, 10, cuts);
            assert_eq!(got.len(), 4, "{got:?}");
            assert_eq!(
                got[0],
                Frame::Refused(FrameError::TooLarge {
                    length: 30,
                    limit: 10
                })
            );
            assert_eq!(got[1], message(b"<1>"));
            // A line's length is what had arrived when it passed the limit.
            assert!(
                matches!(got[2], Frame::Refused(FrameError::TooLarge { length, limit: 10 }) if length > 10),
                "{got:?}"
            );
            assert_eq!(got[3], message(b"<2>ok"));
        }
        // Exactly at the limit: kept, with or without a CR.
        assert_eq!(
            frames(b"<234567890\r\n<23456789ab\n", 10, &[4]),
            vec![
                message(b"<234567890"),
                Frame::Refused(FrameError::TooLarge {
                    length: 11,
                    limit: 10
                }),
            ]
        );
    }

    #[test]
    fn a_broken_length_ends_the_framing_and_a_short_end_is_refused() {
        for bad in [&b"05 <1>abcde"[..], b"12x <1>", b"1234567890 x"] {
            let mut framer = Framer::new(100);
            assert_eq!(
                framer.push(bad),
                vec![Frame::Refused(FrameError::BadLength)]
            );
            assert!(framer.broken());
            assert!(framer.push(b"<1>more\n").is_empty());
        }
        assert_eq!(
            frames(b"10 <1>ab", 100, &[3]),
            vec![Frame::Refused(FrameError::Truncated { missing: 5 })]
        );
        assert_eq!(
            frames(b"\n\r\n", 100, &[1]),
            vec![
                Frame::Refused(FrameError::Empty),
                Frame::Refused(FrameError::Empty)
            ]
        );
    }

    proptest! {
        /// Messages framed either way and fed in any pieces come back
        /// exactly, in order; none is held past the limit.
        #[test]
        fn framed_messages_come_back_whatever_the_pieces(
            messages in prop::collection::vec(
                (any::<bool>(), prop::collection::vec(any::<u8>(), 1..60)), 0..20),
            cuts in prop::collection::vec(1usize..90, 1..8),
        ) {
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            for (counted, mut bytes) in messages {
                if counted {
                    stream.extend_from_slice(format!("{} ", bytes.len()).as_bytes());
                    stream.extend_from_slice(&bytes);
                } else {
                    // A line: no LF inside, and not read as a length.
                    bytes.retain(|&b| b != b'\n');
                    if bytes.last() == Some(&b'\r') {
                        bytes.push(b'.');
                    }
                    bytes.insert(0, b'<');
                    stream.extend_from_slice(&bytes);
                    stream.push(b'\n');
                }
                expected.push(Frame::Message(bytes));
            }
            prop_assert_eq!(frames(&stream, 64, &cuts), expected);
        }

        /// The messages cut out of any bytes do not depend on how the
        /// bytes arrive (refusals may say other lengths).
        #[test]
        fn messages_do_not_depend_on_the_pieces(
            stream in prop::collection::vec(prop_oneof![
                4 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'<'), 1 => Just(b' '), 1 => b'0'..=b'9'
            ], 0..300),
            cuts in prop::collection::vec(1usize..40, 1..6),
        ) {
            let messages = |frames: Vec<Frame>| -> Vec<Vec<u8>> {
                frames.into_iter().filter_map(|f| match f { Frame::Message(m) => Some(m), _ => None }).collect()
            };
            prop_assert_eq!(
                messages(frames(&stream, 16, &cuts)),
                messages(frames(&stream, 16, &[stream.len().max(1)]))
            );
        }

        /// Any bytes: frames or refusals, never a panic, never a message
        /// over the limit, never more held than the limit and a header.
        #[test]
        fn any_bytes_are_framed_within_bounds(
            stream in prop::collection::vec(any::<u8>(), 0..400),
            cuts in prop::collection::vec(1usize..50, 1..6),
        ) {
            let mut framer = Framer::new(32);
            let mut at = 0;
            for &cut in cuts.iter().cycle() {
                if at >= stream.len() { break; }
                let end = (at + cut).min(stream.len());
                for frame in framer.push(&stream[at..end]) {
                    if let Frame::Message(m) = frame {
                        prop_assert!(m.len() <= 32);
                    }
                }
                prop_assert!(framer.buffer.len() <= 32 + MAX_LENGTH_DIGITS + 2);
                at = end;
            }
            framer.end();
        }
    }
}
