//! What a UAC sends when SIPp's `bye` default behaviour aborts one of its calls (a receive
//! timeout or too many retransmissions): a CANCEL while its INVITE is still unanswered but
//! ringing, a BYE once the dialog exists, nothing before any answer. The two messages are
//! written to put on the wire what SIPp 3.6.1 puts there (observed with `-trace_msg`).

use std::collections::HashMap;
use std::time::Instant;

use super::call::CallValues;
use super::engine::{Engine, Net};
use super::template::{Template, compile};
use super::vars::View;

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

/// The compiled BYE and CANCEL.
pub struct AbortMessages {
    bye: Template,
    cancel: Template,
}

impl Default for AbortMessages {
    fn default() -> Self {
        let c = |t: &str| compile(t, &HashMap::new(), &mut |_| 0).expect("a fixed message");
        Self {
            bye: c(BYE),
            cancel: c(CANCEL),
        }
    }
}

impl Engine {
    /// Sends the CANCEL or BYE that ends an aborted UAC call on the wire too (`-nd` or
    /// `-default_behaviors none` turn this off).
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
        let invite_pending = call.last_sent.starts_with(b"INVITE");
        let msg = if invite_pending {
            let code = std::str::from_utf8(call.last_msg.get(8..11).unwrap_or_default())
                .ok()
                .and_then(|c| c.parse::<u16>().ok());
            match code {
                // An error answer was ACKed already; a 2xx not ACKed yet needs more than SIPp's
                // CANCEL, which sipload does not send.
                Some(c) if c >= 200 => return,
                Some(_) => &self.aborts.cancel,
                None => return,
            }
        } else {
            &self.aborts.bye
        };
        // SIPp renders these with message index -1, which shows in the BYE's branch.
        call.msg_index = usize::MAX;
        let mut buf = std::mem::take(&mut self.scratch);
        let vars = View {
            local: &call.vars,
            global: &self.globals,
            is_global: &self.sc.var_global,
        };
        msg.render(
            &CallValues {
                env: &self.env,
                call,
                vars,
            },
            &mut buf,
        );
        net.send(call.peer, &buf);
        self.scratch = buf;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fixed_messages_compile() {
        let _ = super::AbortMessages::default();
    }
}
