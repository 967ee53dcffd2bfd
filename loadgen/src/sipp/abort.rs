//! Unexpected messages and aborted calls, as SIPp 3.6.1 handles them (observed with
//! `-trace_msg` against real SIPp):
//!
//! - A scenario with a `_unexp.main` label sends the call there instead, keeps the message for
//!   the next `<recv>` and sets `$_unexp.retaddr` to the step it was at; while that variable
//!   is non-zero (or when the handler's `<recv>` does not take the message either), an
//!   unexpected message is handled as below.
//! - With `abortunexp`, an unexpected BYE or CANCEL is answered with 200; any other message
//!   becomes the call's last message (for the `[last_*]` of what is sent next) and the call is
//!   aborted, as it is on a receive timeout or too many retransmissions.
//! - An aborted UAC call (with the `bye` behaviour) sends, while its INVITE is the last request
//!   it sent: an ACK for a final error answer (>= 400), an ACK and a BYE after a 200, a CANCEL
//!   after anything else, nothing before any answer; once the INVITE is done, a BYE.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use sipdispatch::sip::{Message, StartLine};

use super::engine::{Engine, Net, values};
use super::stats;
use super::template::{Template, compile};
use super::vars::{Space, Var};
use super::wire::simple_reply;

const ACK: &str = "ACK [last_Request_URI] SIP/2.0
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
CSeq: [last_cseq_number] ACK
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Subject: Performance Test
Content-Length: 0
";

const BYE: &str = "BYE [last_Request_URI] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
[last_Call-ID:]
CSeq: [last_cseq_number+1] BYE
Max-Forwards: 70
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0
";

const CANCEL: &str = "CANCEL [last_Request_URI] SIP/2.0
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
CSeq: [last_cseq_number] CANCEL
Max-Forwards: 70
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0
";

/// The compiled ACK, BYE and CANCEL.
pub struct AbortMessages {
    ack: Template,
    bye: Template,
    cancel: Template,
}

impl Default for AbortMessages {
    fn default() -> Self {
        let c = |t: &str| compile(t, &HashMap::new(), &mut |_| 0).expect("a fixed message");
        Self {
            ack: c(ACK),
            bye: c(BYE),
            cancel: c(CANCEL),
        }
    }
}

/// The status code of a response, 0 for a request (as SIPp's `get_reply_code`).
fn reply_code(msg: &[u8]) -> u16 {
    if !msg.starts_with(b"SIP/2.0 ") {
        return 0;
    }
    std::str::from_utf8(msg.get(8..11).unwrap_or_default())
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

impl Engine {
    /// Sends what SIPp sends when it aborts a UAC call (`-nd` or a behaviour list without
    /// `bye` turn this off).
    pub(super) fn abort(&mut self, slot: usize, _now: Instant, net: &mut impl Net) {
        if !self.sc.uac || !self.env.behaviors.bye {
            return;
        }
        let Some(call) = self.calls[slot].as_mut() else {
            return;
        };
        if call.idx == 0 || call.last_msg.is_empty() {
            return;
        }
        let a = &self.aborts;
        let msgs: [Option<&Template>; 2] =
            if call.last_sent.starts_with(b"INVITE") && !call.established {
                match reply_code(&call.last_msg) {
                    c if c >= 400 => [Some(&a.ack), None],
                    _ if call.ack_pending => [Some(&a.ack), Some(&a.bye)],
                    _ => [Some(&a.cancel), None],
                }
            } else {
                [Some(&a.bye), None]
            };
        // SIPp renders these with message index -1, which shows in the BYE's branch.
        call.msg_index = usize::MAX;
        let mut buf = std::mem::take(&mut self.scratch);
        for msg in msgs.into_iter().flatten() {
            msg.render(&values(&self.env, &self.globals, &self.sc, call), &mut buf);
            net.send(call.peer, &buf);
        }
        self.scratch = buf;
    }

    /// A message no step of the call expects: to `_unexp.main` when the scenario has it (see
    /// the module's notes), else SIPp's default behaviours.
    pub(super) fn unexpected(
        &mut self,
        slot: usize,
        now: Instant,
        src: SocketAddr,
        m: &Message<'_>,
        net: &mut impl Net,
    ) {
        if let Some(target) = self.sc.unexp_main
            && !self.replaying
            && self.jump_to_handler(slot, target, src, m.buf)
        {
            self.advance(slot, now, net);
            return;
        }
        let abort = self.env.behaviors.abort_unexpected;
        if let (Some(log), Some(call)) = (self.errors.as_mut(), self.calls[slot].as_ref()) {
            let first = m.buf.split(|&b| b == b'\r').next().unwrap_or_default();
            log.push(format!(
                "{} on unexpected message for Call-Id '{}': while expecting step {} (line {}), received '{}'",
                if abort { "Aborting call" } else { "Continuing call" },
                String::from_utf8_lossy(&call.call_id),
                call.idx,
                self.sc.steps.get(call.idx).map_or(0, |s| s.line),
                String::from_utf8_lossy(first)
            ));
        }
        if !abort {
            return;
        }
        let Some(call) = self.calls[slot].as_mut() else {
            return;
        };
        // SIPp's automatic answer, which `_unexp.main` turns off.
        if self.sc.unexp_main.is_none()
            && matches!(m.start, StartLine::Request { .. })
            && matches!(m.method_bytes(), b"BYE" | b"CANCEL")
        {
            net.send(call.peer, &simple_reply(m));
        } else {
            call.last_msg.clear();
            call.last_msg.extend_from_slice(m.buf);
            call.last_cseq_number = m.cseq;
            self.abort(slot, now, net);
        }
        self.end_call(slot, now, Some(stats::UNEXPECTED));
    }

    /// Moves the call to the `_unexp.main` step with the message queued; false when
    /// `$_unexp.retaddr` is non-zero (already in the handler).
    fn jump_to_handler(&mut self, slot: usize, target: usize, src: SocketAddr, msg: &[u8]) -> bool {
        let Some(call) = self.calls[slot].as_mut() else {
            return false;
        };
        let mut vars = Space {
            local: &mut call.vars,
            global: &mut self.globals,
            is_global: &self.sc.var_global,
        };
        if let Some(r) = self.sc.unexp_retaddr {
            if vars.get(r).double() != 0.0 {
                return false;
            }
            vars.set(r, Var::Double(call.idx as f64));
        }
        if let Some(p) = self.sc.unexp_pausedaddr {
            // SIPp stores the end of a pause in its millisecond clock (0 when not paused).
            let until = match call.wake {
                Some((at, super::call::Wake::Pause)) => {
                    at.saturating_duration_since(self.env.started).as_millis() as f64
                }
                _ => 0.0,
            };
            vars.set(p, Var::Double(until));
        }
        call.wake = None;
        call.queued.clear();
        call.queued.extend_from_slice(msg);
        call.queued_from = Some(src);
        call.idx = target;
        true
    }

    /// At a `<recv>`: the message queued by `_unexp.main`, processed now.
    pub(super) fn replay_queued(&mut self, slot: usize, now: Instant, net: &mut impl Net) {
        let Some(call) = self.calls[slot].as_mut() else {
            return;
        };
        let Some(from) = call.queued_from.take() else {
            return;
        };
        let msg = std::mem::take(&mut call.queued);
        self.replaying = true;
        self.on_datagram(now, from, &msg, net);
        self.replaying = false;
        if let Some(call) = self.calls[slot].as_mut()
            && call.queued_from.is_none()
        {
            call.queued = msg;
            call.queued.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fixed_messages_compile() {
        let _ = super::AbortMessages::default();
    }
}
