//! Reading Kafka responses: big-endian integers, strings, varints, and
//! lengths checked against what is left, so a short or hostile response is
//! an error, never a panic.

use bytes::{Buf, Bytes};

use super::error::KafkaError;

/// Big-endian and varint reads that fail instead of panicking on short input.
pub(super) struct Reader(pub(super) Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), KafkaError> {
        if self.0.len() < n {
            return Err(KafkaError::Protocol("the response ends early".into()));
        }
        Ok(())
    }

    pub(super) fn i8(&mut self) -> Result<i8, KafkaError> {
        self.need(1)?;
        Ok(self.0.get_i8())
    }

    pub(super) fn i16(&mut self) -> Result<i16, KafkaError> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }

    pub(super) fn i32(&mut self) -> Result<i32, KafkaError> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }

    pub(super) fn i64(&mut self) -> Result<i64, KafkaError> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }

    /// A protocol STRING: i16 length, then the bytes.
    pub(super) fn string(&mut self) -> Result<Bytes, KafkaError> {
        let length = self.i16()?.max(0) as usize;
        self.bytes(length)
    }

    pub(super) fn bytes(&mut self, n: usize) -> Result<Bytes, KafkaError> {
        self.need(n)?;
        Ok(self.0.split_to(n))
    }

    /// Kafka's zigzag varint.
    pub(super) fn varint(&mut self) -> Result<i64, KafkaError> {
        let (value, length) = super::varint::read(&self.0)
            .ok_or_else(|| KafkaError::Protocol("truncated or overlong varint".into()))?;
        self.0.advance(length);
        Ok(value)
    }

    /// Length-prefixed bytes; length -1 is null.
    pub(super) fn varbytes(&mut self) -> Result<Option<Bytes>, KafkaError> {
        match self.varint()? {
            n if n < 0 => Ok(None),
            n => self.bytes(n as usize).map(Some),
        }
    }
}
