package bidder

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// connLimiter is the HTTP listener with caps on the open connections, in
// all (Options.HTTPMaxConns) and per client address
// (Options.HTTPMaxConnsPerIP). A connection past a cap is answered at once
// with a JSON error (503 with Retry-After past the total, 429 past the
// per-address cap) and closed, before fasthttp sees it: no goroutine of the
// server, no read buffer, no byte of its request parsed. fasthttp has both
// caps too (Concurrency, MaxConnsPerIP), but answers them in plain text,
// counts neither in a way we can export, and keys IPv6 clients by whole
// address, which a client with a /64 can vary at will.
//
// Safe for concurrent use: Accept runs on fasthttp's accept loop, Close of
// the connections on their serving goroutines.
type connLimiter struct {
	net.Listener
	maxConns, perIP int // <= 0: no cap

	mu   sync.Mutex
	open int
	byIP map[netip.Addr]int32 // open connections per client key (ipKey)

	// answering bounds the refused connections being answered at once; a
	// refusal past it is closed without an answer.
	answering chan struct{}

	refusedTotal *metrics.Counter
	refusedPerIP *metrics.Counter
	accepted     *metrics.Counter
}

const (
	// maxRefusalsAnswering bounds the goroutines answering refused
	// connections.
	maxRefusalsAnswering = 256
	// refusalLinger is how long a refused connection may take to get its
	// answer and send the rest of its request, read and dropped so that
	// closing it does not reset the answer away.
	refusalLinger = 500 * time.Millisecond
	// refusalDrain bounds the bytes read from a refused connection.
	refusalDrain = 16 << 10
)

var (
	answerTooManyConns = refusalAnswer(503, "Service Unavailable", "too many open connections: the server's cap is reached (--http-max-conns); retry later")
	answerTooManyPerIP = refusalAnswer(429, "Too Many Requests", "too many open connections from your address (--http-max-conns-per-ip); reuse a connection or retry later")
)

// refusalAnswer is a whole HTTP answer with a JSON error, closing the
// connection.
func refusalAnswer(code int, status, msg string) []byte {
	body := appendStr(append([]byte(nil), `{"error":`...), msg)
	body = append(body, '}')
	b := []byte("HTTP/1.1 " + strconv.Itoa(code) + " " + status + "\r\n" +
		"Server: bidpulse\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	return append(b, body...)
}

func newConnLimiter(ln net.Listener, maxConns, perIP int, set *metrics.Set) *connLimiter {
	l := &connLimiter{
		Listener:     ln,
		maxConns:     maxConns,
		perIP:        perIP,
		byIP:         map[netip.Addr]int32{},
		answering:    make(chan struct{}, maxRefusalsAnswering),
		refusedTotal: set.NewCounter(`bidpulse_http_connections_refused_total{reason="max_conns"}`),
		refusedPerIP: set.NewCounter(`bidpulse_http_connections_refused_total{reason="per_ip"}`),
		accepted:     set.NewCounter(`bidpulse_http_connections_accepted_total`),
	}
	set.NewGauge(`bidpulse_http_connections`, func() float64 { return float64(l.openConns()) })
	set.NewGauge(`bidpulse_http_connections_max`, func() float64 { return float64(max(maxConns, 0)) })
	set.NewGauge(`bidpulse_http_connections_per_ip_max`, func() float64 { return float64(max(perIP, 0)) })
	return l
}

// Accept returns the next connection within the caps; the others are
// refused on the way.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := ipKey(c.RemoteAddr())
		l.mu.Lock()
		switch {
		case l.maxConns > 0 && l.open >= l.maxConns:
			l.mu.Unlock()
			l.refusedTotal.Inc()
			l.refuse(c, answerTooManyConns)
			continue
		case l.perIP > 0 && int(l.byIP[key]) >= l.perIP:
			l.mu.Unlock()
			l.refusedPerIP.Inc()
			l.refuse(c, answerTooManyPerIP)
			continue
		}
		l.open++
		l.byIP[key]++
		l.mu.Unlock()
		l.accepted.Inc()
		return &limitedConn{Conn: c, l: l, key: key}, nil
	}
}

// refuse answers c with answer and closes it, on a goroutine of its own so
// the accept loop goes on; past maxRefusalsAnswering it just closes c.
func (l *connLimiter) refuse(c net.Conn, answer []byte) {
	select {
	case l.answering <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-l.answering }()
		_ = c.SetDeadline(time.Now().Add(refusalLinger))
		if _, err := c.Write(answer); err == nil {
			// Half-close, then read what the client still sends: closing
			// with unread bytes would reset the connection, and the client
			// could lose the answer.
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(c, refusalDrain))
		}
		c.Close()
	}()
}

func (l *connLimiter) release(key netip.Addr) {
	l.mu.Lock()
	l.open--
	if n := l.byIP[key] - 1; n > 0 {
		l.byIP[key] = n
	} else {
		delete(l.byIP, key)
	}
	l.mu.Unlock()
}

func (l *connLimiter) openConns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// limitedConn is an accepted connection; its first Close gives its place
// back.
type limitedConn struct {
	net.Conn
	l      *connLimiter
	key    netip.Addr
	closed atomic.Bool
}

func (c *limitedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.key)
	}
	return c.Conn.Close()
}

// ipKey is the address a connection counts against: the IPv4 address, or
// the /64 of an IPv6 one (a client usually holds a whole /64, so a cap per
// IPv6 address would hold nobody). Other addresses share the zero key.
func ipKey(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is6() {
		p, err := ip.Prefix(64)
		if err != nil {
			return netip.Addr{}
		}
		return p.Addr()
	}
	return ip
}
