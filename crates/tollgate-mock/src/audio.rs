//! stub
use crate::route::{Ctx, Reply};
pub(crate) fn speech(_: &Ctx, _: &[u8]) -> Reply {
    Reply::bad_request("x")
}
