//! Bounds-checked big-endian reads over a configuration record.

use super::CodecError;

/// Reads fields front to back, reporting the field and offset on truncation.
pub(crate) struct Cursor<'a> {
    record: &'static str,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(record: &'static str, data: &'a [u8]) -> Self {
        Cursor {
            record,
            data,
            pos: 0,
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        let slice = self
            .pos
            .checked_add(len)
            .and_then(|end| self.data.get(self.pos..end))
            .ok_or(CodecError::Truncated {
                record: self.record,
                field,
                offset: self.pos,
            })?;
        self.pos += len;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        let bytes = self.take(1, field)?;
        Ok(bytes.first().copied().unwrap_or(0))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, CodecError> {
        let bytes = self.take(2, field)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }
}

/// Reads bit fields most significant bit first (AudioSpecificConfig, AV1 sequence headers).
pub(crate) struct BitReader<'a> {
    record: &'static str,
    data: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(record: &'static str, data: &'a [u8]) -> Self {
        BitReader {
            record,
            data,
            bit: 0,
        }
    }

    pub(crate) fn bits(&mut self, count: u32, field: &'static str) -> Result<u32, CodecError> {
        let mut value = 0u32;
        for _ in 0..count {
            let byte = self.data.get(self.bit / 8).ok_or(CodecError::Truncated {
                record: self.record,
                field,
                offset: self.bit / 8,
            })?;
            let bit = (byte >> (7 - (self.bit % 8))) & 1;
            value = (value << 1) | u32::from(bit);
            self.bit += 1;
        }
        Ok(value)
    }

    /// Skips to the next byte boundary of the record (`byte_alignment()`).
    pub(crate) fn align(&mut self) {
        self.bit = self.bit.next_multiple_of(8);
    }
}
