// Package client is bidpulse's Go client, for ad servers and DSP bidders
// that ask for bid multipliers and for producers that publish events.
//
// Bids. A Client asks over HTTP (NewHTTP, fasthttp with reused
// connections) or over NATS request-reply (NewNATS, the "bidpulse" micro
// service). Every call has a deadline: the context's, or Options.Timeout
// from the call's start, whichever comes first. A call never fails closed:
// when bidpulse cannot answer in time, is unreachable, or refuses the
// request, the answer is neutral (multiplier 1, level "none") with the
// reason in Answer.FailOpen, the error says why (wrapping a *StatusError
// when bidpulse answered with a status other than 200), and Stats counts
// it. The bidder may bid with the answer in every case.
//
// Keys are normalised as bidpulse's ingest normalises events (device
// lower-cased, country upper-cased) by the same function,
// event.AppendNormal, so a key can never be normalised differently on the
// two sides.
//
// Events. A Publisher publishes events durably: JetStream publishes with a
// Nats-Msg-Id (a resend after a timeout is stored once), batched by count,
// size and time, resent until acknowledged, and flushed on Close. An
// acknowledgement means the stream stored the message; bidpulse applies it
// shortly after (its ingest lag, in /v1/stats), so a multiplier asked for
// right after Close may not count it yet.
//
// For a stream partitioned by campaign (docs/SCALING.md), set
// PublisherOptions.PartitionedBase: the Publisher then keeps one batch per
// campaign and sends it to <PartitionedBase>.<campaign>.<Producer>, refuses
// an event whose campaign is not one subject token, and PublishRawTo sends
// a caller's own message to a campaign's subject.
//
// A bidder, against `make run`:
//
//	c, err := client.NewHTTP("http://127.0.0.1:8080", client.Options{Timeout: 5 * time.Millisecond})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	a, err := c.Multiplier(ctx, client.Key{Campaign: "c1", Placement: "news.example/top", Device: "Mobile"})
//	if err != nil {
//		log.Printf("bidding neutral (%s): %v", a.FailOpen, err) // a.Multiplier is 1
//	}
//	bid := base * a.Multiplier
//
// A producer:
//
//	p, err := client.NewPublisher(nc, client.PublisherOptions{})
//	...
//	err = p.Publish(&client.Event{ID: "imp-1", Type: client.Impression, Campaign: "c1", Placement: "news.example/top"})
//	...
//	err = p.Close(ctx) // sends the open batch and waits for every acknowledgement
package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fastjson"
)

// The bid subjects of the NATS micro service, one per HTTP bid route.
const (
	// SubjectMultiplier answers one key: the body is the query string of
	// GET /v1/multiplier ("campaign=c1&placement=p1").
	SubjectMultiplier = "bidpulse.v1.multiplier"
	// SubjectMultipliers answers a batch: the body of POST /v1/multipliers.
	SubjectMultipliers = "bidpulse.v1.multipliers"
	// SubjectOpenRTB answers an OpenRTB BidRequest: the body of POST
	// /v1/openrtb/multipliers.
	SubjectOpenRTB = "bidpulse.v1.openrtb"
	// QueryHeader carries the query string of the batch and OpenRTB
	// subjects (explain=true, format=prebid).
	QueryHeader = "Bidpulse-Query"
	// AuthHeader carries what HTTP's Authorization header would.
	AuthHeader = "Authorization"
	// ErrorCodeHeader and ErrorHeader carry a refused request's HTTP status
	// and error text (nats.go/micro's error headers).
	ErrorCodeHeader = "Nats-Service-Error-Code"
	ErrorHeader     = "Nats-Service-Error"
)

// DefaultTimeout is a call's deadline when neither Options.Timeout nor the
// context sets one: a bid answer later than that is of no use in an
// auction.
const DefaultTimeout = 10 * time.Millisecond

// Options configure a Client. The zero value is usable.
type Options struct {
	// Timeout bounds each call from its start (default DefaultTimeout); a
	// context deadline that comes sooner wins.
	Timeout time.Duration
	// Token is sent as "Authorization: Bearer <Token>" (the read token,
	// which explain=true needs when the service has one).
	Token string
	// MaxConns bounds the HTTP connections (default 512). A call finding
	// them all busy fails open at once (FailUnavailable).
	MaxConns int
	// Name identifies the client: HTTP User-Agent (default
	// "bidpulse-client").
	Name string
}

// Key names what a multiplier is asked for: a campaign (required) and the
// optional creative, placement, device, country and site, as events carry
// them.
type Key struct {
	Campaign, Creative, Placement, Device, Country, Site string
}

// FailReason says why an answer is neutral; Answered when bidpulse
// answered.
type FailReason uint8

// The reasons for a neutral answer.
const (
	// Answered: bidpulse's own answer.
	Answered FailReason = iota
	// FailDeadline: no answer before the call's deadline.
	FailDeadline
	// FailUnavailable: bidpulse could not be reached (connection refused,
	// no NATS responders, every connection busy, client closed).
	FailUnavailable
	// FailRejected: bidpulse refused the request (HTTP 4xx: a bad key, a
	// body too large); the error carries its reason.
	FailRejected
	// FailServer: bidpulse answered 5xx or an answer that could not be read.
	FailServer
	numFailReasons
)

var failNames = [numFailReasons]string{"answered", "deadline", "unavailable", "rejected", "server"}

func (r FailReason) String() string {
	if r < numFailReasons {
		return failNames[r]
	}
	return "unknown"
}

// Answer is one multiplier.
type Answer struct {
	// Multiplier is what to multiply the bid by: 1 when FailOpen is set, 0
	// means do not bid.
	Multiplier float64
	// Level is the rollup level that answered ("campaign/placement"), or
	// "none".
	Level string
	// FailOpen is Answered, or why the answer is the neutral one.
	FailOpen FailReason
}

var neutral = Answer{Multiplier: 1, Level: "none"}

// Stats counts a Client's calls and their outcomes.
type Stats struct {
	// Calls is every Multiplier, Multipliers and OpenRTB call.
	Calls uint64
	// FailOpen counts the neutral answers by reason (index FailReason;
	// FailOpen[Answered] stays 0): a failed call once, a batch included,
	// and each key refused alone in an answered batch once.
	FailOpen [numFailReasons]uint64
}

// FailedOpen is the sum of the neutral answers.
func (s *Stats) FailedOpen() uint64 {
	n := uint64(0)
	for _, v := range s.FailOpen {
		n += v
	}
	return n
}

// Client asks bidpulse for multipliers. It is safe for concurrent use.
type Client struct {
	t       transport
	timeout time.Duration
	auth    string
	closed  atomic.Bool

	calls    atomic.Uint64
	failOpen [numFailReasons]atomic.Uint64

	// levels interns level names, so an answer's Level allocates nothing
	// once a level has been seen (copy on write; there are few levels).
	levels   atomic.Pointer[map[string]string]
	levelsMu sync.Mutex

	bufs    sync.Pool // *callBuf
	parsers fastjson.ParserPool
}

// transport sends one request to an endpoint and returns the HTTP status
// and the answer's body, appended to dst.
type transport interface {
	do(deadline time.Time, ep endpoint, query, body []byte, auth string, dst []byte) (status int, answer []byte, err error)
	close()
}

// endpoint is a bid route: its HTTP method and path, its NATS subject.
type endpoint struct {
	method, path, subject string
}

var (
	epMultiplier  = endpoint{"GET", "/v1/multiplier", SubjectMultiplier}
	epMultipliers = endpoint{"POST", "/v1/multipliers", SubjectMultipliers}
	epOpenRTB     = endpoint{"POST", "/v1/openrtb/multipliers", SubjectOpenRTB}
)

// callBuf is one call's reusable buffers.
type callBuf struct {
	q, body, answer, norm []byte
}

func newClient(t transport, o Options) *Client {
	c := &Client{t: t, timeout: o.Timeout}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if o.Token != "" {
		c.auth = "Bearer " + o.Token
	}
	m := map[string]string{"none": "none"}
	c.levels.Store(&m)
	return c
}

// Close releases the client's connections (HTTP). Calls after Close fail
// open with FailUnavailable.
func (c *Client) Close() {
	if c.closed.CompareAndSwap(false, true) {
		c.t.close()
	}
}

// Stats returns the counts so far.
func (c *Client) Stats() Stats {
	s := Stats{Calls: c.calls.Load()}
	for i := range s.FailOpen {
		s.FailOpen[i] = c.failOpen[i].Load()
	}
	return s
}

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("bidpulse client: closed")

// Multiplier asks for the multiplier of k. The answer is always usable:
// on an error it is the neutral one, with FailOpen saying why.
func (c *Client) Multiplier(ctx context.Context, k Key) (Answer, error) {
	c.calls.Add(1)
	if c.closed.Load() {
		return c.fail(FailUnavailable), ErrClosed
	}
	b := c.getBuf()
	defer c.bufs.Put(b)
	b.q = appendKeyQuery(b.q[:0], &k, &b.norm)
	status, body, err := c.t.do(c.deadline(ctx), epMultiplier, b.q, nil, c.auth, b.answer[:0])
	b.answer = body
	if r, err := c.check(status, body, err); r != Answered {
		return c.fail(r), err
	}
	p := c.parsers.Get()
	defer c.parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		return c.fail(FailServer), fmt.Errorf("bidpulse client: cannot read the answer: %w", err)
	}
	a, ok := c.answerOf(v)
	if !ok {
		return c.fail(FailServer), fmt.Errorf("bidpulse client: an answer without a multiplier: %.200s", body)
	}
	return a, nil
}

// Multipliers asks for the multipliers of keys in one request (POST
// /v1/multipliers; at most 1000 keys) and appends the answers, in the
// order of keys, to dst. When the call fails every answer is neutral; a
// key that bidpulse refuses alone (an invalid value) gets a neutral
// answer with FailRejected while the others are answered, and the error
// names the first such key.
func (c *Client) Multipliers(ctx context.Context, keys []Key, dst []Answer) ([]Answer, error) {
	c.calls.Add(1)
	for i := range keys {
		if !keys[i].validUTF8() {
			return c.multipliersRefusing(ctx, keys, dst)
		}
	}
	return c.multipliers(ctx, keys, dst)
}

// multipliersRefusing answers a batch holding keys that are not valid
// UTF-8: they are refused here, as bidpulse refuses them in a single call
// (a JSON body could only carry them replaced, as another key), and the
// others are asked for.
func (c *Client) multipliersRefusing(ctx context.Context, keys []Key, dst []Answer) ([]Answer, error) {
	var sent []Key
	for i := range keys {
		if keys[i].validUTF8() {
			sent = append(sent, keys[i])
		}
	}
	var got []Answer
	var err error
	if len(sent) > 0 {
		got, err = c.multipliers(ctx, sent, nil)
	}
	var firstErr error
	j := 0
	for i := range keys {
		if keys[i].validUTF8() {
			dst = append(dst, got[j])
			j++
			continue
		}
		c.failOpen[FailRejected].Add(1)
		a := neutral
		a.FailOpen = FailRejected
		dst = append(dst, a)
		if firstErr == nil {
			firstErr = fmt.Errorf("bidpulse client: key %d (campaign %q) refused: a dimension is not valid UTF-8", i, keys[i].Campaign)
		}
	}
	if err != nil {
		return dst, err
	}
	return dst, firstErr
}

// multipliers is Multipliers without the call count and the UTF-8 check.
func (c *Client) multipliers(ctx context.Context, keys []Key, dst []Answer) ([]Answer, error) {
	fill := func(r FailReason) []Answer {
		c.failOpen[r].Add(1)
		a := neutral
		a.FailOpen = r
		for range keys {
			dst = append(dst, a)
		}
		return dst
	}
	if c.closed.Load() {
		return fill(FailUnavailable), ErrClosed
	}
	if len(keys) == 0 {
		return dst, nil
	}
	b := c.getBuf()
	defer c.bufs.Put(b)
	b.body = appendKeysJSON(b.body[:0], keys, &b.norm)
	status, body, err := c.t.do(c.deadline(ctx), epMultipliers, nil, b.body, c.auth, b.answer[:0])
	b.answer = body
	if r, err := c.check(status, body, err); r != Answered {
		return fill(r), err
	}
	p := c.parsers.Get()
	defer c.parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		return fill(FailServer), fmt.Errorf("bidpulse client: cannot read the batch answer: %w", err)
	}
	items, err := v.Array()
	if err != nil || len(items) != len(keys) {
		return fill(FailServer), fmt.Errorf("bidpulse client: a batch answer of %d items for %d keys: %.200s", len(items), len(keys), body)
	}
	var firstErr error
	for i, it := range items {
		a, ok := c.answerOf(it)
		if !ok {
			c.failOpen[FailRejected].Add(1)
			a = neutral
			a.FailOpen = FailRejected
			if firstErr == nil {
				firstErr = fmt.Errorf("bidpulse client: key %d (campaign %q) refused: %s", i, keys[i].Campaign, it.GetStringBytes("error"))
			}
		}
		dst = append(dst, a)
	}
	return dst, firstErr
}

// deadline is the call's deadline: the context's, or c.timeout from now,
// whichever is sooner. A context cancelled before the call fails it open
// at once; one cancelled during the call is not watched (the call ends by
// its deadline anyway).
func (c *Client) deadline(ctx context.Context) time.Time {
	if ctx.Err() != nil {
		return time.Time{} // cancelled: no time left, the call fails open at once
	}
	d := time.Now().Add(c.timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

func (c *Client) getBuf() *callBuf {
	if b, ok := c.bufs.Get().(*callBuf); ok {
		return b
	}
	return &callBuf{}
}

// fail counts a neutral answer and returns it.
func (c *Client) fail(r FailReason) Answer {
	c.failOpen[r].Add(1)
	a := neutral
	a.FailOpen = r
	return a
}

// check classifies a transport result: Answered for a 200, else the
// reason to fail open and the error to return.
func (c *Client) check(status int, body []byte, err error) (FailReason, error) {
	switch {
	case err != nil:
		switch {
		case errors.Is(err, errDeadline):
			return FailDeadline, err
		case errors.Is(err, errBadAnswer):
			return FailServer, err
		}
		return FailUnavailable, err
	case status == 200:
		return Answered, nil
	case status >= 400 && status < 500:
		return FailRejected, fmt.Errorf("bidpulse client: refused: %w", newStatusError(status, body))
	default:
		return FailServer, fmt.Errorf("bidpulse client: %w", newStatusError(status, body))
	}
}

// StatusError is an answer of bidpulse other than 200: its HTTP status (over
// NATS, the micro error code) and the start of its body, which says why
// ({"error":...}). A call's error wraps it (errors.As) when bidpulse
// answered with such a status; its absence means no answer (a deadline, a
// connection error) or a 200 that could not be read.
type StatusError struct {
	Code int
	// Body is the answer's first maxErrorBody bytes.
	Body string
}

// maxErrorBody bounds the body an error keeps.
const maxErrorBody = 300

func newStatusError(code int, body []byte) *StatusError {
	return &StatusError{Code: code, Body: string(body[:min(len(body), maxErrorBody)])}
}

func (e *StatusError) Error() string {
	return "answered " + strconv.Itoa(e.Code) + ": " + e.Body
}

// answerOf reads {"multiplier":..,"level":..}.
func (c *Client) answerOf(v *fastjson.Value) (Answer, bool) {
	m := v.Get("multiplier")
	if m == nil {
		return Answer{}, false
	}
	f, err := m.Float64()
	if err != nil {
		return Answer{}, false
	}
	lv := v.GetStringBytes("level")
	if lv == nil {
		return Answer{Multiplier: f, Level: "none"}, true
	}
	return Answer{Multiplier: f, Level: c.level(lv)}, true
}

// level returns the interned string of a level name.
func (c *Client) level(b []byte) string {
	if s, ok := (*c.levels.Load())[string(b)]; ok {
		return s
	}
	c.levelsMu.Lock()
	defer c.levelsMu.Unlock()
	old := *c.levels.Load()
	if s, ok := old[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(old) >= maxLevels {
		return s // not interned: a service with this many levels is not expected
	}
	m := make(map[string]string, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[s] = s
	c.levels.Store(&m)
	return s
}

// maxLevels bounds the interned level names (a service has at most 32
// rollups).
const maxLevels = 64
