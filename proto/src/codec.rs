//! The codec of every service: prost, with a request that cannot be decoded
//! (invalid UTF-8 in a `string`, a truncated or malformed message) answered
//! `INVALID_ARGUMENT` — the caller sent it — instead of prost's `INTERNAL`,
//! which would send an operator to look for a collector bug.
//!
//! Only messages named `…Request` (every people's request is) are mapped:
//! an answer a client cannot decode, or an agent's uplink message, keeps
//! prost's code, so the agent's refusal handling (which splits a batch on
//! `INVALID_ARGUMENT`) never mistakes a garbled answer for a refusal.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// [`ProstCodec`] whose decode errors are `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct StrictCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(ProstCodec::<T, U>::default().decoder())
    }
}

/// [`ProstDecoder`] with its errors mapped to `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct StrictDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let name = std::any::type_name::<U>()
            .rsplit("::")
            .next()
            .unwrap_or_default();
        self.0.decode(buf).map_err(|s| {
            if name.ends_with("Request") {
                Status::invalid_argument(format!(
                    "the request is not a valid {name} message: {}",
                    s.message()
                ))
            } else {
                s
            }
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
