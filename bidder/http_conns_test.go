package bidder

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dialFrom opens a TCP connection to addr from the loopback address src
// (Linux routes all of 127.0.0.0/8 to the loopback interface).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot dial from %s (the test needs 127.0.0.0/8 on the loopback interface): %v", src, err)
	}
	return c
}

// refusal reads the answer a refused connection gets, and checks that it is
// a JSON error with Retry-After and that the connection is then closed.
func refusal(t *testing.T, c net.Conn) int {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("a refused connection got no answer: %v", err)
	}
	var m map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || m["error"] == "" {
		t.Fatalf("a refusal is not a JSON error: %v %v", m, err)
	}
	resp.Body.Close()
	if resp.Header.Get("Retry-After") == "" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("unexpected refusal headers: %v", resp.Header)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatalf("a refused connection stayed open")
	}
	return resp.StatusCode
}

// slowClient trickles a request's headers, one byte every 50 ms, until the
// server closes the connection; it returns how many bytes it sent, or -1
// if it sent all of them (200: 10 s) and the server still held on.
func slowClient(c net.Conn) int {
	req := "GET /v1/multiplier?campaign=c HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 200)
	done := make(chan struct{})
	go func() { // the server's answer (a 408) or its close ends the trickle
		io.Copy(io.Discard, c)
		close(done)
	}()
	for i := 0; i < len(req); i++ {
		select {
		case <-done:
			return i
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := c.Write([]byte{req[i]}); err != nil {
			return i
		}
	}
	return -1
}

// TestSlowAndIdleClients floods the service from three addresses with
// clients that trickle their headers (slowloris) or send nothing, past the
// per-address cap, while a fourth address keeps asking for bids: the
// connections past the cap are refused with a JSON 429, the slow and idle
// ones are cut by the read timeout, and every bid is answered.
func TestSlowAndIdleClients(t *testing.T) {
	const perIP, flood = 8, 12
	e := startTestService(t, func(o *Options) {
		o.HTTPMaxConnsPerIP = perIP
		o.HTTPReadTimeout = time.Second
		o.HTTPIdleTimeout = time.Second
	})
	addr := e.svc.HTTPAddr()

	// Bids from 127.0.0.1 until the flood is over.
	var bids, failed atomic.Int64
	var bidErr atomic.Value
	stop := make(chan struct{})
	bidsDone := make(chan struct{})
	go func() {
		defer close(bidsDone)
		client := &http.Client{Timeout: 2 * time.Second}
		for i := 0; i < 2000; i++ { // 2000 x 10 ms: far beyond the flood
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			resp, err := client.Get(e.base + "/v1/multiplier?campaign=c1")
			if err != nil {
				failed.Add(1)
				bidErr.Store(err.Error())
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
				bidErr.Store(resp.Status)
				continue
			}
			bids.Add(1)
		}
	}()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var slow, idle []int // bytes sent before the cut; -1: never cut
	refusedCodes := map[int]int{}
	start := time.Now()
	for k, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		var conns []net.Conn
		for i := 0; i < flood; i++ {
			conns = append(conns, dialFrom(t, src, addr))
		}
		// The server takes the first perIP of each address and refuses the
		// rest; once it has refused them all, every connection of the
		// address has been through its accept loop.
		want := uint64((k + 1) * (flood - perIP))
		checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			if got := e.svc.conns.refusedPerIP.Get(); got != want {
				return fmt.Errorf("%d connections refused; want %d", got, want)
			}
			return nil
		})
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				// A refused connection has its answer waiting; an accepted one
				// has nothing to read yet.
				c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				var one [1]byte
				if _, err := c.Read(one[:]); err == nil {
					mu.Lock()
					refusedCodes[int(one[0])]++
					mu.Unlock()
					return
				}
				c.SetReadDeadline(time.Time{})
				if src == "127.0.0.4" || i%2 == 0 {
					// Idle: send nothing, wait for the server to close.
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					_, err := io.Copy(io.Discard, c)
					var ne net.Error
					n := 0
					if errors.As(err, &ne) && ne.Timeout() {
						n = -1
					}
					mu.Lock()
					idle = append(idle, n)
					mu.Unlock()
					return
				}
				n := slowClient(c)
				mu.Lock()
				slow = append(slow, n)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	took := time.Since(start)
	close(stop)
	<-bidsDone

	refused := 0
	for _, n := range refusedCodes {
		refused += n
	}
	if refused != 3*(flood-perIP) || refusedCodes['H'] != refused {
		t.Fatalf("unexpected refused connections; got %v; want %d answers starting with 'H'", refusedCodes, 3*(flood-perIP))
	}
	if got := e.svc.conns.refusedPerIP.Get(); got != uint64(3*(flood-perIP)) {
		t.Fatalf("unexpected bidpulse_http_connections_refused_total{reason=per_ip}; got %d; want %d", got, 3*(flood-perIP))
	}
	if len(slow)+len(idle) != 3*perIP {
		t.Fatalf("unexpected accepted connections; got %d slow and %d idle; want %d in all", len(slow), len(idle), 3*perIP)
	}
	for _, n := range slow {
		if n < 0 {
			t.Fatalf("a slow client was never cut: %v", slow)
		}
	}
	for _, n := range idle {
		if n < 0 {
			t.Fatalf("an idle client was never cut: %v", idle)
		}
	}
	if failed.Load() != 0 || bids.Load() == 0 {
		t.Fatalf("bids during the flood: %d answered, %d failed (last: %v)", bids.Load(), failed.Load(), bidErr.Load())
	}
	t.Logf("flood of %d connections from 3 addresses: %d refused, slow clients cut after %v bytes, %d idle cut, in %v; %d bids answered meanwhile",
		3*flood, refused, slow, len(idle), took.Round(time.Millisecond), bids.Load())
	// Every place is given back.
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := e.svc.conns.openConns(); n > 1 {
			return errors.New("connections still counted open")
		}
		return nil
	})
}

// TestConnectionCap fills the server's connection cap: the next connection,
// from any address, gets a JSON 503 with Retry-After; once the held ones
// are closed, new ones are served again.
func TestConnectionCap(t *testing.T) {
	e := startTestService(t, func(o *Options) {
		o.HTTPMaxConns = 6
		o.HTTPMaxConnsPerIP = -1
	})
	addr := e.svc.HTTPAddr()
	var held []net.Conn
	for i := 0; i < 6; i++ {
		held = append(held, dialFrom(t, "127.0.0.2", addr))
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := e.svc.conns.openConns(); n != 6 {
			return errors.New("not all accepted yet")
		}
		return nil
	})
	for _, src := range []string{"127.0.0.2", "127.0.0.5"} {
		if code := refusal(t, dialFrom(t, src, addr)); code != 503 {
			t.Fatalf("unexpected status past the connection cap; got %d; want 503", code)
		}
	}
	if got := e.svc.conns.refusedTotal.Get(); got != 2 {
		t.Fatalf("unexpected bidpulse_http_connections_refused_total{reason=max_conns}; got %d; want 2", got)
	}
	for _, c := range held {
		c.Close()
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		resp, err := (&http.Client{Timeout: time.Second}).Get(e.base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return nil
	})
}

// TestConnectionCapPerIP checks the per-address cap's answer and that an
// address's places come back when its connections close.
func TestConnectionCapPerIP(t *testing.T) {
	e := startTestService(t, func(o *Options) { o.HTTPMaxConnsPerIP = 2 })
	addr := e.svc.HTTPAddr()
	a, b := dialFrom(t, "127.0.0.2", addr), dialFrom(t, "127.0.0.2", addr)
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := e.svc.conns.openConns(); n != 2 {
			return errors.New("not accepted yet")
		}
		return nil
	})
	if code := refusal(t, dialFrom(t, "127.0.0.2", addr)); code != 429 {
		t.Fatalf("unexpected status past the per-address cap; got %d; want 429", code)
	}
	// Another address is not concerned.
	c := dialFrom(t, "127.0.0.3", addr)
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("another address was refused: %v %v", resp, err)
	}
	a.Close()
	b.Close()
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		cl := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
			return d.DialContext(ctx, n, a)
		}}}
		resp, err := cl.Get(e.base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return nil
	})
}
