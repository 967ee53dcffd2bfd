//! Route matching: the first configured route whose conditions all hold for a request (method,
//! Request-URI user prefix, a header's value) takes it.

use crate::config::Route;
use crate::sip::{Message, StartLine};

/// The first route that matches `msg`, if any.
pub fn match_route<'r>(routes: &'r [Route], msg: &Message<'_>) -> Option<&'r Route> {
    let StartLine::Request {
        method_span, uri, ..
    } = msg.start
    else {
        return None;
    };
    let method = method_span.of(msg.buf);
    let user = uri.user.map_or(&[][..], |u| u.of(msg.buf));
    routes.iter().find(|r| {
        (r.methods.is_empty() || r.methods.iter().any(|m| m == method))
            && r.ruri_user_prefix
                .as_ref()
                .is_none_or(|p| user.starts_with(p))
            && r.header
                .as_ref()
                .is_none_or(|(name, value)| msg.header(name) == Some(value.as_slice()))
    })
}
