package ingest

// parseAckReply reads the stream sequence, the consumer sequence, the delivery count, the
// message time (Unix ns) and the consumer's pending count (messages not yet
// delivered when this one was sent; 0 when absent or unreadable) from a JetStream message's reply subject without
// allocating. Both forms are understood:
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
//	$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>[.<token>...]
func parseAckReply(reply string) (seq, cseq, delivered uint64, tsNs int64, pending uint64, ok bool) {
	const prefix = "$JS.ACK."
	if len(reply) <= len(prefix) || reply[:len(prefix)] != prefix {
		return 0, 0, 0, 0, 0, false
	}
	var tok [12]string
	n := 2 // "$JS" and "ACK"
	start := len(prefix)
	for i := start; i <= len(reply); i++ {
		if i == len(reply) || reply[i] == '.' {
			if n < len(tok) {
				tok[n] = reply[start:i]
			}
			n++
			start = i + 1
		}
	}
	var base int
	switch {
	case n == 9:
		base = 2
	case n >= 12:
		base = 4
	default:
		return 0, 0, 0, 0, 0, false
	}
	delivered, ok1 := parseUint(tok[base+2])
	seq, ok2 := parseUint(tok[base+3])
	cseq, ok4 := parseUint(tok[base+4])
	ts, ok3 := parseUint(tok[base+5])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return 0, 0, 0, 0, 0, false
	}
	pending, _ = parseUint(tok[base+6])
	return seq, cseq, delivered, int64(ts), pending, true
}

func parseUint(s string) (uint64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
