// Package resp is the RESP2/RESP3 wire format as the proxy needs it: framing replies in
// place (FrameReply) or from a stream (Reader), checking a client's request stream against
// its limits as bytes arrive (Scanner) and parsing its commands (NextCommand), encoding
// commands and replies, and recognising the cluster's redirections (RedirectKind,
// ParseRedirect). It imports only the standard library and redcon.
package resp

// numSlots is the number of Redis Cluster hash slots: a MOVED or ASK naming a slot outside
// them is malformed.
const numSlots = 16384
