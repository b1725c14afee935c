//! Fragments (MS-PSRP 2.2.4): how a PSRP message travels in pieces.
//!
//! Each fragment is a 21-byte big-endian header (ObjectId u64, FragmentId u64, flags u8 with Start = 1
//! and End = 2, BlobLength u32) and a slice of the message. A transport packet may carry several
//! fragments; a fragment never spans packets.

use std::collections::HashMap;

/// Size of a fragment header.
pub const HEADER_LEN: usize = 21;
/// PowerShell's default fragment size, header included (`32 << 10`); used as-is over SSH.
pub const DEFAULT_MAX_FRAGMENT: usize = 32 << 10;
/// Largest message accepted by default while reassembling (PowerShell's per-object receive limit
/// is 10 MiB; a command may total 50 MiB).
pub const DEFAULT_MAX_MESSAGE: usize = 50 << 20;

const FLAG_START: u8 = 0x1;
const FLAG_END: u8 = 0x2;

/// One fragment, borrowing its blob from the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// The message id, unique per sender.
    pub object_id: u64,
    /// 0, 1, 2… within the message.
    pub fragment_id: u64,
    /// First fragment of the message.
    pub start: bool,
    /// Last fragment of the message.
    pub end: bool,
    /// The slice of the message.
    pub blob: &'a [u8],
}

/// What was wrong with fragment data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FragmentError {
    /// Fewer bytes than the header or the blob length says.
    #[error("truncated fragment: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the fragment needs.
        needed: usize,
        /// Bytes there were.
        available: usize,
    },
    /// Flag bits other than Start and End.
    #[error("fragment {object_id}/{fragment_id} has unknown flag bits {flags:#04x}")]
    BadFlags {
        /// The message.
        object_id: u64,
        /// The fragment.
        fragment_id: u64,
        /// The flags.
        flags: u8,
    },
    /// A fragment out of order, or a continuation of a message never started (MS-PSRP 3.1.5.1.2).
    #[error("fragment {fragment_id} of message {object_id} out of order (expected {expected})")]
    OutOfOrder {
        /// The message.
        object_id: u64,
        /// The fragment received.
        fragment_id: u64,
        /// The fragment expected next.
        expected: u64,
    },
    /// A message larger than the reassembly limit.
    #[error("message {object_id} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The message.
        object_id: u64,
        /// The limit.
        limit: usize,
    },
}

/// Parses one fragment at the start of `data`; returns it and the rest of the packet.
pub fn parse(data: &[u8]) -> Result<(Fragment<'_>, &[u8]), FragmentError> {
    if data.len() < HEADER_LEN {
        return Err(FragmentError::Truncated { needed: HEADER_LEN, available: data.len() });
    }
    let u64_at = |i: usize| u64::from_be_bytes(data[i..i + 8].try_into().unwrap_or_default());
    let object_id = u64_at(0);
    let fragment_id = u64_at(8);
    let flags = data[16];
    let len = u32::from_be_bytes(data[17..21].try_into().unwrap_or_default()) as usize;
    if flags & !(FLAG_START | FLAG_END) != 0 {
        return Err(FragmentError::BadFlags { object_id, fragment_id, flags });
    }
    let end = HEADER_LEN.checked_add(len).filter(|e| *e <= data.len()).ok_or(FragmentError::Truncated {
        needed: HEADER_LEN.saturating_add(len),
        available: data.len(),
    })?;
    let fragment = Fragment { object_id, fragment_id, start: flags & FLAG_START != 0, end: flags & FLAG_END != 0, blob: &data[HEADER_LEN..end] };
    Ok((fragment, &data[end..]))
}

/// Appends `message` to `out` as fragments of at most `max_fragment` bytes each, header included.
///
/// # Panics
/// If `max_fragment` leaves no room for data (≤ [`HEADER_LEN`]): a caller's constant, never input.
pub fn write(out: &mut Vec<u8>, object_id: u64, message: &[u8], max_fragment: usize) {
    assert!(max_fragment > HEADER_LEN, "a fragment needs room for data");
    let room = max_fragment - HEADER_LEN;
    let count = message.len().div_ceil(room).max(1);
    for i in 0..count {
        let blob = &message[(i * room).min(message.len())..((i + 1) * room).min(message.len())];
        let mut flags = 0;
        if i == 0 {
            flags |= FLAG_START;
        }
        if i + 1 == count {
            flags |= FLAG_END;
        }
        out.extend_from_slice(&object_id.to_be_bytes());
        out.extend_from_slice(&(i as u64).to_be_bytes());
        out.push(flags);
        out.extend_from_slice(&(blob.len() as u32).to_be_bytes());
        out.extend_from_slice(blob);
    }
}

/// Reassembles messages from fragments, one partial message per ObjectId.
#[derive(Debug)]
pub struct Defragmenter {
    max_message: usize,
    partial: HashMap<u64, (u64, Vec<u8>)>,
}

impl Default for Defragmenter {
    fn default() -> Self {
        Defragmenter::new(DEFAULT_MAX_MESSAGE)
    }
}

impl Defragmenter {
    /// A defragmenter that refuses messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Defragmenter {
        Defragmenter { max_message, partial: HashMap::new() }
    }

    /// Feeds every fragment of one packet; returns the messages it completes, in order.
    pub fn feed(&mut self, mut packet: &[u8]) -> Result<Vec<Vec<u8>>, FragmentError> {
        let mut done = Vec::new();
        while !packet.is_empty() {
            let (fragment, rest) = parse(packet)?;
            packet = rest;
            if let Some(message) = self.push(fragment)? {
                done.push(message);
            }
        }
        Ok(done)
    }

    /// Feeds one fragment; returns the message if it completes one.
    pub fn push(&mut self, f: Fragment<'_>) -> Result<Option<Vec<u8>>, FragmentError> {
        let too_large = |len: usize| len > self.max_message;
        if f.start {
            if f.fragment_id != 0 {
                return Err(FragmentError::OutOfOrder { object_id: f.object_id, fragment_id: f.fragment_id, expected: 0 });
            }
            if too_large(f.blob.len()) {
                return Err(FragmentError::TooLarge { object_id: f.object_id, limit: self.max_message });
            }
            // A new start discards any half-built message with the same id, as PowerShell does.
            self.partial.remove(&f.object_id);
            if f.end {
                return Ok(Some(f.blob.to_vec()));
            }
            self.partial.insert(f.object_id, (1, f.blob.to_vec()));
            return Ok(None);
        }
        let Some((next, buf)) = self.partial.get_mut(&f.object_id) else {
            return Err(FragmentError::OutOfOrder { object_id: f.object_id, fragment_id: f.fragment_id, expected: 0 });
        };
        if f.fragment_id != *next {
            let expected = *next;
            self.partial.remove(&f.object_id);
            return Err(FragmentError::OutOfOrder { object_id: f.object_id, fragment_id: f.fragment_id, expected });
        }
        if too_large(buf.len() + f.blob.len()) {
            self.partial.remove(&f.object_id);
            return Err(FragmentError::TooLarge { object_id: f.object_id, limit: self.max_message });
        }
        buf.extend_from_slice(f.blob);
        *next += 1;
        if f.end {
            return Ok(self.partial.remove(&f.object_id).map(|(_, b)| b));
        }
        Ok(None)
    }

    /// Whether a message is half built.
    pub fn is_idle(&self) -> bool {
        self.partial.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_reassembles() {
        let message: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut packet = Vec::new();
        write(&mut packet, 7, &message, 32 << 10);
        assert_eq!(packet.len(), message.len() + 4 * HEADER_LEN, "100000 bytes in 4 fragments of 32 KiB");
        let mut d = Defragmenter::default();
        assert_eq!(d.feed(&packet), Ok(vec![message]));
        assert!(d.is_idle());
        // An empty message is one fragment with both flags.
        let mut packet = Vec::new();
        write(&mut packet, 1, b"", 100);
        assert_eq!(packet[16], 0x03);
        assert_eq!(d.feed(&packet), Ok(vec![Vec::new()]));
    }

    #[test]
    fn interleaved_messages_and_errors() {
        let mut a = Vec::new();
        write(&mut a, 1, b"aaaaaaaaaa", HEADER_LEN + 4);
        let mut b = Vec::new();
        write(&mut b, 2, b"bbbbbb", HEADER_LEN + 4);
        let (a0, a_rest) = parse(&a).expect("fragment");
        let (b0, b_rest) = parse(&b).expect("fragment");
        let mut d = Defragmenter::default();
        assert_eq!(d.push(a0), Ok(None));
        assert_eq!(d.push(b0), Ok(None));
        assert_eq!(d.feed(b_rest), Ok(vec![b"bbbbbb".to_vec()]));
        assert_eq!(d.feed(a_rest), Ok(vec![b"aaaaaaaaaa".to_vec()]));

        let (_, rest) = parse(&a).expect("fragment");
        let (a1, rest) = parse(rest).expect("fragment");
        let (a2, _) = parse(rest).expect("fragment");
        let mut d = Defragmenter::default();
        assert_eq!(d.push(a1), Err(FragmentError::OutOfOrder { object_id: 1, fragment_id: 1, expected: 0 }));
        d.push(parse(&a).expect("fragment").0).expect("start");
        assert_eq!(d.push(a2), Err(FragmentError::OutOfOrder { object_id: 1, fragment_id: 2, expected: 1 }));

        let mut d = Defragmenter::new(5);
        assert_eq!(d.feed(&a), Err(FragmentError::TooLarge { object_id: 1, limit: 5 }));
        assert_eq!(parse(&a[..10]), Err(FragmentError::Truncated { needed: 21, available: 10 }));
        assert_eq!(parse(&a[..22]), Err(FragmentError::Truncated { needed: 25, available: 22 }));
        let mut bad = a.clone();
        bad[16] = 0x07;
        assert!(matches!(parse(&bad), Err(FragmentError::BadFlags { flags: 0x07, .. })));
    }
}
