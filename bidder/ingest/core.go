package ingest

import (
	"sync"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// serverDrops counts, with the embedded server, the messages the server
// dropped for this service's connection: a connection the server closes as
// a slow consumer loses what it had queued for it. The count covers every
// message on the connection: events, and the little control traffic (KV
// updates) that shares it. The server counts the messages it queued to each
// connection (OutMsgs, kept for closed connections too); the client counts
// those it read (InMsgs). For each connection that ended, the difference is
// what the server dropped.
//
// The split between connections is taken in the disconnect callback, which
// nats.go runs before it reconnects (ReconnectWait 500 ms), so messages of
// the next connection are not counted against the old one.
type serverDrops struct {
	srv *server.Server

	mu      sync.Mutex
	started bool
	cid     uint64 // the server's id of the current connection
	inBase  uint64 // client InMsgs when it began
	settle  []endedConn
	dropped int64
}

// endedConn is a connection that ended, not yet settled.
type endedConn struct {
	cid uint64
	in  uint64 // messages the client read on it
}

// connected starts tracking nc's current connection. The client's count
// for it starts where disconnected left it (or at the first connection),
// not here: the reconnect callback runs after messages may have arrived.
func (d *serverDrops) connected(nc *nats.Conn) {
	cid, err := nc.GetClientID()
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.started {
		d.started, d.inBase = true, nc.Stats().InMsgs
	}
	d.cid = 0
	if err == nil {
		d.cid = cid
	}
}

// disconnected notes that the current connection ended.
func (d *serverDrops) disconnected(nc *nats.Conn) {
	in := nc.Stats().InMsgs
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cid != 0 {
		d.settle = append(d.settle, endedConn{cid: d.cid, in: in - d.inBase})
		d.cid = 0
	}
	d.inBase = in
}

// update settles the ended connections the server lists as closed and
// returns the messages the server dropped so far.
func (d *serverDrops) update() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	keep := d.settle[:0]
	for _, e := range d.settle {
		cz, err := d.srv.Connz(&server.ConnzOptions{CID: e.cid, State: server.ConnClosed})
		if err != nil || len(cz.Conns) == 0 {
			keep = append(keep, e) // not closed on the server's side yet
			continue
		}
		if out := uint64(cz.Conns[0].OutMsgs); out > e.in {
			d.dropped += int64(out - e.in)
		}
	}
	d.settle = keep
	return d.dropped
}
