//! stub
use crate::route::{Call, Ctx, Reply};
pub(crate) fn generate(_: &Ctx, _: &[u8]) -> Reply {
    Reply::bad_request("x")
}
pub(crate) fn edit(_: &Ctx, _: &Call<'_>, _: &[u8]) -> Reply {
    Reply::bad_request("x")
}
pub(crate) fn variation(_: &Ctx, _: &Call<'_>, _: &[u8]) -> Reply {
    Reply::bad_request("x")
}
