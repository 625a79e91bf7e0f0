//! Walks an FLV byte stream without buffering tags: finds the end of the first video tag and
//! hands over the first bytes of every video tag (where the latency stamp is).
//!
//! A load player only needs to know when its first video frame has fully arrived and what each
//! video frame's stamp says; it must not keep a copy of the stream. This scanner walks tag
//! headers and skips bodies, holding at most one 11-byte tag header and one video prefix across
//! buffer boundaries (the full FLV reader in `streamr-media` materialises every tag, which is the
//! wrong cost profile for 10 000 players).

use crate::stamp::STAMP_PREFIX;

/// FLV file header (9 bytes) plus the first PreviousTagSize (4 bytes).
const PREAMBLE_LEN: u64 = 13;
/// Tag header length.
const TAG_HEADER_LEN: usize = 11;
/// FLV tag type of video.
const VIDEO_TAG: u8 = 9;

/// Incremental FLV scanner.
#[derive(Debug)]
pub struct FlvScanner {
    /// Bytes still to skip (preamble, or the rest of a tag body plus its PreviousTagSize).
    skip: u64,
    header: [u8; TAG_HEADER_LEN],
    header_len: usize,
    started: bool,
    /// Bytes of the current video tag body not read yet (0: not in a video body).
    video_left: u64,
    prefix: [u8; STAMP_PREFIX],
    prefix_len: usize,
    found: bool,
}

impl Default for FlvScanner {
    fn default() -> Self {
        FlvScanner {
            skip: 0,
            header: [0; TAG_HEADER_LEN],
            header_len: 0,
            started: false,
            video_left: 0,
            prefix: [0; STAMP_PREFIX],
            prefix_len: 0,
            found: false,
        }
    }
}

impl FlvScanner {
    /// Feeds received bytes, calling `on_video` with the first bytes (up to [`STAMP_PREFIX`]) of
    /// each video tag body; returns true once the first video tag has been received completely.
    pub fn push(&mut self, mut data: &[u8], mut on_video: impl FnMut(&[u8])) -> bool {
        if !self.started {
            self.started = true;
            self.skip = PREAMBLE_LEN;
        }
        while !data.is_empty() {
            if self.video_left > 0 {
                let take = (self.video_left.min(data.len() as u64)) as usize;
                let room = STAMP_PREFIX - self.prefix_len;
                let copy = room.min(take);
                if copy > 0 {
                    self.prefix[self.prefix_len..self.prefix_len + copy]
                        .copy_from_slice(&data[..copy]);
                    self.prefix_len += copy;
                }
                self.video_left -= take as u64;
                data = &data[take..];
                let body_done = self.video_left == 0;
                if copy > 0 && (self.prefix_len == STAMP_PREFIX || body_done) {
                    on_video(&self.prefix[..self.prefix_len]);
                }
                if body_done {
                    self.found = true;
                    self.skip = 4;
                }
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64);
                self.skip -= n;
                data = &data[n as usize..];
                continue;
            }
            let want = TAG_HEADER_LEN - self.header_len;
            let n = want.min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len == TAG_HEADER_LEN {
                self.header_len = 0;
                let body = u64::from(u32::from_be_bytes([
                    0,
                    self.header[1],
                    self.header[2],
                    self.header[3],
                ]));
                if self.header[0] & 0x1f == VIDEO_TAG {
                    self.prefix_len = 0;
                    self.video_left = body;
                    if body == 0 {
                        self.found = true;
                        self.skip = 4;
                    }
                } else {
                    self.skip = body + 4;
                }
            }
        }
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: u8, body: &[u8]) -> Vec<u8> {
        let len = body.len() as u32;
        let mut out = vec![
            kind,
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        out.extend_from_slice(body);
        out.extend_from_slice(&(len + 11).to_be_bytes());
        out
    }

    #[test]
    fn finds_the_first_video_tag_end_and_every_video_prefix_across_any_split() {
        let mut stream = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        stream.extend(tag(18, &[2; 30]));
        stream.extend(tag(8, &[0xaf, 0, 1, 2]));
        let video_end = stream.len() + 11 + 100;
        stream.extend(tag(9, &[0x17; 100]));
        stream.extend(tag(8, &[0xaf, 1, 1, 2]));
        stream.extend(tag(9, &[0x27, 1, 2, 3]));
        for split in 1..stream.len() {
            let mut scanner = FlvScanner::default();
            let mut prefixes = Vec::new();
            let (a, b) = stream.split_at(split);
            let first = scanner.push(a, |p| prefixes.push(p.to_vec()));
            assert_eq!(first, split >= video_end, "split at {split}");
            assert!(scanner.push(b, |p| prefixes.push(p.to_vec())));
            assert_eq!(
                prefixes,
                [vec![0x17; STAMP_PREFIX], vec![0x27, 1, 2, 3]],
                "split at {split}"
            );
        }
    }
}
