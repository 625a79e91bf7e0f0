//! Finds the end of the first video tag in an FLV byte stream without buffering tags.
//!
//! A load player only needs to know when its first video frame has fully arrived; it must not
//! keep a copy of the stream. This scanner walks tag headers and skips bodies, holding at most
//! one 11-byte tag header across buffer boundaries (the full FLV reader in `streamr-media`
//! materialises every tag, which is the wrong cost profile for 10 000 players).

/// FLV file header (9 bytes) plus the first PreviousTagSize (4 bytes).
const PREAMBLE_LEN: u64 = 13;
/// Tag header length.
const TAG_HEADER_LEN: usize = 11;
/// FLV tag type of video.
const VIDEO_TAG: u8 = 9;

/// Incremental scanner for the first complete video tag.
#[derive(Debug, Default)]
pub struct FirstVideoTagScanner {
    /// Bytes still to skip (preamble, or the rest of a tag body plus its PreviousTagSize).
    skip: u64,
    header: [u8; TAG_HEADER_LEN],
    header_len: usize,
    started: bool,
    /// True while skipping the body of a video tag.
    in_video_body: bool,
    found: bool,
}

impl FirstVideoTagScanner {
    /// Feeds received bytes; returns true once the first video tag has been received completely.
    pub fn push(&mut self, mut data: &[u8]) -> bool {
        if !self.started {
            self.started = true;
            self.skip = PREAMBLE_LEN;
        }
        while !self.found && !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64);
                self.skip -= n;
                data = &data[n as usize..];
                if self.skip == 0 && self.in_video_body {
                    self.found = true;
                }
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
                self.in_video_body = self.header[0] & 0x1f == VIDEO_TAG;
                // A video frame is complete at the end of its body; any other tag is skipped
                // together with the PreviousTagSize that follows it.
                self.skip = if self.in_video_body { body } else { body + 4 };
                if self.in_video_body && body == 0 {
                    self.found = true;
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
    fn finds_the_first_video_tag_end_across_any_split() {
        let mut stream = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        stream.extend(tag(18, &[2; 30]));
        stream.extend(tag(8, &[0xaf, 0, 1, 2]));
        let video_end = stream.len() + 11 + 100;
        stream.extend(tag(9, &[0x17; 100]));
        for split in 1..stream.len() {
            let mut scanner = FirstVideoTagScanner::default();
            let (a, b) = stream.split_at(split);
            let first = scanner.push(a);
            assert_eq!(first, split >= video_end, "split at {split}");
            assert!(scanner.push(b));
        }
    }
}
