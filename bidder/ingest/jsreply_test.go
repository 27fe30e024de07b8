package ingest

import "testing"

func TestParseAckReply(t *testing.T) {
	f := func(reply string, seq, cseq, delivered uint64, ts int64, pending uint64, ok bool) {
		t.Helper()
		s, c, d, tm, p, k := parseAckReply(reply)
		if k != ok || (ok && (s != seq || c != cseq || d != delivered || tm != ts || p != pending)) {
			t.Fatalf("unexpected parseAckReply(%q); got %d %d %d %d %d %v; want %d %d %d %d %d %v", reply, s, c, d, tm, p, k, seq, cseq, delivered, ts, pending, ok)
		}
	}
	f("$JS.ACK.S.C.1.42.7.1700000000000000000.3", 42, 7, 1, 1700000000000000000, 3, true)
	f("$JS.ACK.hub.ACCHASH.S.C.2.43.8.1700000000000000001.0.rand", 43, 8, 2, 1700000000000000001, 0, true)
	f("$JS.ACK.hub.ACCHASH.S.C.2.43.8.1700000000000000001.12.rand.more", 43, 8, 2, 1700000000000000001, 12, true)
	f("_INBOX.x", 0, 0, 0, 0, 0, false)
	f("$JS.ACK.S.C.1.x.7.1.3", 0, 0, 0, 0, 0, false)
	f("$JS.ACK.S.C.1.42.x.1.3", 0, 0, 0, 0, 0, false)
	f("$JS.ACK.S.C.1.42", 0, 0, 0, 0, 0, false)
	f("$JS.ACK.", 0, 0, 0, 0, 0, false)
	f("$JS.ACK.S.C.1.99999999999999999999999.7.1.3", 0, 0, 0, 0, 0, false)
	if n := testing.AllocsPerRun(100, func() { parseAckReply("$JS.ACK.S.C.1.42.7.1700000000000000000.3") }); n != 0 {
		t.Fatalf("unexpected allocations; got %v; want 0", n)
	}
}
