//! Writing ISO BMFF boxes: a byte buffer with nested boxes whose sizes are filled in when closed.

use super::Fmp4Error;

/// A buffer of nested boxes. [`BoxWriter::begin`] writes a header with a placeholder size,
/// [`BoxWriter::end`] patches it.
#[derive(Debug, Default)]
pub(crate) struct BoxWriter {
    buf: Vec<u8>,
    open: Vec<(usize, [u8; 4])>,
}

impl BoxWriter {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        BoxWriter {
            buf: Vec::with_capacity(capacity),
            open: Vec::new(),
        }
    }

    /// Opens a plain box.
    pub(crate) fn begin(&mut self, fourcc: &[u8; 4]) {
        self.open.push((self.buf.len(), *fourcc));
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(fourcc);
    }

    /// Opens a full box (version and 24-bit flags after the header).
    pub(crate) fn begin_full(&mut self, fourcc: &[u8; 4], version: u8, flags: u32) {
        self.begin(fourcc);
        self.u32((u32::from(version) << 24) | (flags & 0x00FF_FFFF));
    }

    /// Closes the innermost open box, writing its size.
    pub(crate) fn end(&mut self) -> Result<(), Fmp4Error> {
        let Some((start, fourcc)) = self.open.pop() else {
            return Ok(());
        };
        let len = self.buf.len() - start;
        let size = u32::try_from(len).map_err(|_| Fmp4Error::BoxTooLarge {
            fourcc: String::from_utf8_lossy(&fourcc).into_owned(),
            len,
        })?;
        if let Some(slot) = self.buf.get_mut(start..start + 4) {
            slot.copy_from_slice(&size.to_be_bytes());
        }
        Ok(())
    }

    /// A complete box with the given body.
    pub(crate) fn leaf(&mut self, fourcc: &[u8; 4], body: &[u8]) -> Result<(), Fmp4Error> {
        self.begin(fourcc);
        self.bytes(body);
        self.end()
    }

    pub(crate) fn u16(&mut self, value: u16) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn i32(&mut self, value: i32) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn zeros(&mut self, count: usize) {
        self.buf.resize(self.buf.len() + count, 0);
    }

    pub(crate) fn bytes(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Current length, for offsets patched later.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Overwrites four bytes at `offset` (a field written earlier as a placeholder).
    pub(crate) fn patch_u32(&mut self, offset: usize, value: u32) {
        if let Some(slot) = self.buf.get_mut(offset..offset + 4) {
            slot.copy_from_slice(&value.to_be_bytes());
        }
    }

    /// The unity transformation matrix of `mvhd` and `tkhd`.
    pub(crate) fn matrix(&mut self) {
        for value in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000u32] {
            self.u32(value);
        }
    }

    /// The bytes, with every box closed.
    pub(crate) fn finish(mut self) -> Result<Vec<u8>, Fmp4Error> {
        while !self.open.is_empty() {
            self.end()?;
        }
        Ok(self.buf)
    }
}
