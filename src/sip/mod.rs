//! SIP wire handling without I/O: the scanner that finds what routing needs in one datagram, and
//! the stateless-proxy rules that turn a scanned message into the bytes to send.
