//! stub
use crate::route::{Call, Ctx, Reply};
pub(crate) fn transcription(_: &Ctx, _: &Call<'_>, _: &[u8]) -> Reply {
    Reply::bad_request("x")
}
pub(crate) fn translation(_: &Ctx, _: &Call<'_>, _: &[u8]) -> Reply {
    Reply::bad_request("x")
}
