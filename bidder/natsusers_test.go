package bidder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/control"
	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/bidpulse/bidpulse/bidder/natsauth"
	"github.com/bidpulse/bidpulse/internal/testcert"
)

// startAuthService starts a test service whose embedded NATS server
// requires authentication; its test connection (e.nc) is the producer's.
func startAuthService(t *testing.T, edit func(o *Options)) *testEnv {
	t.Helper()
	return startTestService(t, func(o *Options) {
		o.NATSServerAuth = NATSAuthOn
		if edit != nil {
			edit(o)
		}
	})
}

// natsClient is a connection as one of the embedded server's users, with
// the asynchronous errors the server sent it.
type natsClient struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	mu   sync.Mutex
	errs []error
}

// connectAs connects to e's embedded server with user's seed.
func connectAs(t *testing.T, e *testEnv, user string) *natsClient {
	t.Helper()
	c := &natsClient{}
	nk, err := nats.NkeyOptionFromSeed(NATSSeedFile(e.svc.opts.DataDir, user))
	if err != nil {
		t.Fatalf("cannot read the %s seed: %v", user, err)
	}
	c.nc, err = nats.Connect(e.svc.NATSURL(), nk, nats.Name("test "+user), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		c.mu.Lock()
		c.errs = append(c.errs, err)
		c.mu.Unlock()
	}))
	if err != nil {
		t.Fatalf("cannot connect as %s: %v", user, err)
	}
	t.Cleanup(c.nc.Close)
	if c.js, err = jetstream.New(c.nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// expectRefused waits for the server's permissions violation of op
// ("Publish to" or "Subscription to") on subject.
func (c *natsClient) expectRefused(t *testing.T, op, subject string) {
	t.Helper()
	want := fmt.Sprintf("Permissions Violation for %s %q", op, subject)
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, err := range c.errs {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want) {
				return nil
			}
		}
		return fmt.Errorf("no %q among the errors %v", want, c.errs)
	})
}

// short is a context for a request that is expected to fail.
func short(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

// msgs returns how many messages a stream holds, as the service sees it.
func msgs(t *testing.T, admin *natsClient, stream string) uint64 {
	t.Helper()
	st, err := admin.js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatalf("cannot read stream %s: %v", stream, err)
	}
	return st.CachedInfo().State.Msgs
}

func TestEmbeddedAuthDecision(t *testing.T) {
	f := func(mode, addr string, insecure, want bool, wantErr string) {
		t.Helper()
		got, err := embeddedAuth(mode, addr, insecure)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("unexpected embeddedAuth(%q, %q, %v) error; got %v; want one with %q", mode, addr, insecure, err, wantErr)
			}
			return
		}
		if err != nil || got != want {
			t.Fatalf("unexpected embeddedAuth(%q, %q, %v); got %v, %v; want %v", mode, addr, insecure, got, err, want)
		}
	}
	for _, addr := range []string{"127.0.0.1:4222", "127.0.0.2:4222", "[::1]:4222", "localhost:4222", "127.0.0.1:-1"} {
		f(NATSAuthAuto, addr, false, false, "")
		f(NATSAuthOff, addr, false, false, "")
		f(NATSAuthOn, addr, false, true, "")
	}
	for _, addr := range []string{"0.0.0.0:4222", ":4222", "[::]:4222", "10.1.2.3:4222", "nats.example:4222"} {
		f(NATSAuthAuto, addr, false, true, "")
		f(NATSAuthOn, addr, false, true, "")
		f(NATSAuthOff, addr, false, false, "beyond loopback, without authentication")
		f(NATSAuthOff, addr, true, false, "")
	}
	f("maybe", "127.0.0.1:4222", false, false, "invalid nats-auth")
	f(NATSAuthAuto, "nohost", false, false, "invalid nats-addr")
}

// A service that would listen beyond loopback without authentication is
// refused before anything listens; the NATS security settings are checked
// against the mode.
func TestNATSSecurityOptionsRefused(t *testing.T) {
	f := func(edit func(o *Options), want string) {
		t.Helper()
		o := Options{Clock: NewManualClock(testNow), DataDir: t.TempDir()}
		edit(&o)
		_, err := New(o)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error of New; got %v; want one with %q", err, want)
		}
	}
	f(func(o *Options) { o.NATSAddr = "0.0.0.0:4222"; o.NATSServerAuth = NATSAuthOff }, "--nats-insecure")
	f(func(o *Options) { o.NATSURL = "nats://127.0.0.1:1"; o.NATSServerAuth = NATSAuthOn }, "nats-auth on is for the embedded NATS server")
	f(func(o *Options) { o.NATSURL = "nats://127.0.0.1:1"; o.NATSServerInsecure = true }, "nats-insecure is for the embedded")
	f(func(o *Options) { o.NATSURL = "nats://127.0.0.1:1"; o.NATSServerTLSCert = "c.pem" }, "use nats-tls-ca")
	f(func(o *Options) { o.NATSClient.Token = "t" }, "are for an external server (--nats-url)")
	f(func(o *Options) { o.NATSServerTLSCert = "c.pem" }, "give both or neither")
	f(func(o *Options) { o.NATSURL = "nats://u:pw@127.0.0.1:1"; o.NATSClient.Token = "t" }, "carries a password")

	// Beyond loopback with --nats-insecure passes the check (nothing is
	// started here: New listens on nothing).
	o := Options{Clock: NewManualClock(testNow), DataDir: t.TempDir(), NATSAddr: "0.0.0.0:4222", NATSServerAuth: NATSAuthOff, NATSServerInsecure: true}
	if _, err := New(o); err != nil {
		t.Fatalf("unexpected error with --nats-insecure: %v", err)
	}
}

// On loopback, the default stays zero-config: no authentication, no
// credentials written.
func TestNATSAuthOffOnLoopback(t *testing.T) {
	e := startTestService(t, nil)
	if e.svc.opts.natsAuth {
		t.Fatal("unexpected authentication on the default loopback listener")
	}
	if _, err := os.Stat(filepath.Join(e.svc.opts.DataDir, NATSAuthDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unexpected credentials directory without authentication: %v", err)
	}
	e.publish(t, ev("i1", "impression", testNow, "c1", "", ""))
	e.waitReceived(t, 1)
}

// The producer publishes events and nothing else: every other thing the
// test tries is refused by the server, and the service's state shows none
// of them happened.
func TestNATSAuthProducerLeastPrivilege(t *testing.T) {
	e := startAuthService(t, nil)
	url := e.svc.NATSURL()
	if nc, err := nats.Connect(url, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("unexpected connection without credentials")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("unexpected error without credentials; got %v; want %v", err, nats.ErrAuthorization)
	}
	admin := connectAs(t, e, NATSUserService)
	prod := connectAs(t, e, NATSUserProducer)
	ctx := t.Context()

	// What it may do: find the stream and publish acknowledged events.
	if name, err := prod.js.StreamNameBySubject(ctx, "bidpulse.events.test"); err != nil || name != "BIDPULSE_EVENTS" {
		t.Fatalf("unexpected stream of the event subject; got %q, %v; want BIDPULSE_EVENTS", name, err)
	}
	ack, err := prod.js.Publish(ctx, "bidpulse.events.test", []byte(ev("i1", "impression", testNow, "c1", "", "p1")))
	if err != nil || ack.Stream != "BIDPULSE_EVENTS" {
		t.Fatalf("unexpected JetStream publish of an event; got %+v, %v", ack, err)
	}
	waitCounted(t, e, 1)

	events, dlq, audit := msgs(t, admin, "BIDPULSE_EVENTS"), msgs(t, admin, DLQStream), msgs(t, admin, control.AuditStream)
	ctrl := msgs(t, admin, "KV_"+control.Bucket)

	// Write the control bucket, through its subject or its API.
	if _, err := prod.js.Publish(short(t), "$KV.bidpulse_control.killswitch", []byte(`{"enabled":true}`)); err == nil {
		t.Fatal("unexpected success of a KV put by the producer")
	}
	prod.expectRefused(t, "Publish to", "$KV.bidpulse_control.killswitch")
	if _, err := prod.js.KeyValue(short(t), control.Bucket); err == nil {
		t.Fatal("unexpected access of the producer to the control bucket")
	}
	prod.expectRefused(t, "Publish to", "$JS.API.STREAM.INFO.KV_bidpulse_control")

	// Delete or purge the event stream, delete the service's consumer.
	if err := prod.js.DeleteStream(short(t), "BIDPULSE_EVENTS"); err == nil {
		t.Fatal("unexpected success of a stream delete by the producer")
	}
	prod.expectRefused(t, "Publish to", "$JS.API.STREAM.DELETE.BIDPULSE_EVENTS")
	if _, err := prod.nc.RequestWithContext(short(t), "$JS.API.STREAM.PURGE.BIDPULSE_EVENTS", nil); err == nil {
		t.Fatal("unexpected answer to a stream purge by the producer")
	}
	prod.expectRefused(t, "Publish to", "$JS.API.STREAM.PURGE.BIDPULSE_EVENTS")
	consumer := ingest.ConsumerName("test")
	if err := prod.js.DeleteConsumer(short(t), "BIDPULSE_EVENTS", consumer); err == nil {
		t.Fatal("unexpected success of a consumer delete by the producer")
	}
	prod.expectRefused(t, "Publish to", "$JS.API.CONSUMER.DELETE.BIDPULSE_EVENTS."+consumer)

	// Read the dead letters or the audit log.
	for _, s := range []string{DLQStream, control.AuditStream} {
		if _, err := prod.nc.RequestWithContext(short(t), "$JS.API.STREAM.MSG.GET."+s, []byte(`{"seq":1}`)); err == nil {
			t.Fatalf("unexpected answer to a read of %s by the producer", s)
		}
		prod.expectRefused(t, "Publish to", "$JS.API.STREAM.MSG.GET."+s)
	}

	// Publish outside its subjects: a fake dead letter, a fake audit
	// line, a subject beside the bid subjects (which it may request:
	// TestNATSBidsAuth), anything else.
	for _, s := range []string{DLQSubject, control.AuditSubject, "bidpulse.v1.other", "other.subject"} {
		if err := prod.nc.Publish(s, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		prod.expectRefused(t, "Publish to", s)
	}

	// Listen to others' events, the dead letters, the KV bucket.
	for _, s := range []string{"bidpulse.events.>", DLQSubject, "$KV.>", ">"} {
		if _, err := prod.nc.SubscribeSync(s); err != nil {
			t.Fatal(err)
		}
		prod.expectRefused(t, "Subscription to", s)
	}

	// Purge the stream with a rollup header on an event: the stream does
	// not allow rollups.
	roll := &nats.Msg{Subject: "bidpulse.events.test", Header: nats.Header{}, Data: []byte(ev("roll", "impression", testNow, "c1", "", "p1"))}
	roll.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
	if _, err := prod.js.PublishMsg(ctx, roll); err == nil {
		t.Fatal("unexpected success of a rollup by the producer")
	} else {
		t.Logf("rollup refused: %v", err)
	}

	// Reply-subject injection: events the producer may publish, each with
	// a reply subject naming what the stream's acknowledgement would
	// overwrite if it were delivered in the service's account.
	injected := []string{"$KV.bidpulse_control.killswitch", "$KV." + InstancesBucket + "." + consumer,
		control.AuditSubject, DLQSubject, "$JS.API.STREAM.PURGE.BIDPULSE_EVENTS", "$JS.API.STREAM.DELETE." + control.AuditStream}
	for i, reply := range injected {
		m := &nats.Msg{Subject: "bidpulse.events.test", Reply: reply, Data: []byte(ev(fmt.Sprintf("r%d", i), "impression", testNow, "c1", "", "p1"))}
		if err := prod.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	// Barriers. The stream acknowledges in order: once this publish is
	// acknowledged (to the producer's own inbox, a positive control that
	// acks reach the producer's account), the acks of the injected ones
	// were sent. The control bucket and the audit stream store in order:
	// once the service's own writes after them are stored, whatever the
	// injected acks would have written is stored too.
	probe, err := prod.nc.SubscribeSync("_INBOX.probe")
	if err != nil {
		t.Fatal(err)
	}
	spy, err := admin.nc.SubscribeSync("_INBOX.probe")
	if err != nil {
		t.Fatal(err)
	}
	if err := prod.nc.PublishMsg(&nats.Msg{Subject: "bidpulse.events.test", Reply: "_INBOX.probe",
		Data: []byte(ev("r-probe", "impression", testNow, "c1", "", "p1"))}); err != nil {
		t.Fatal(err)
	}
	if m, err := probe.NextMsg(5 * time.Second); err != nil || !strings.Contains(string(m.Data), `"stream":"BIDPULSE_EVENTS"`) {
		t.Fatalf("no acknowledgement to the producer's reply subject: %v", err)
	}
	if err := admin.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := spy.NextMsg(0); err == nil {
		t.Fatalf("the service's account got the producer's acknowledgement: %s", m.Data)
	}
	kv, err := admin.js.KeyValue(ctx, control.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "barrier", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.js.Publish(ctx, control.AuditSubject, []byte(`{"barrier":true}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, control.KillKey); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the kill switch key was written; got %v; want %v", err, jetstream.ErrKeyNotFound)
	}
	waitCounted(t, e, uint64(2+len(injected)))

	// What the service's state says: the events stream holds the events
	// and nothing else happened.
	if got := msgs(t, admin, "BIDPULSE_EVENTS"); got != events+uint64(len(injected))+1 {
		t.Fatalf("unexpected messages in the event stream; got %d; want %d", got, events+uint64(len(injected))+1)
	}
	if got := msgs(t, admin, DLQStream); got != dlq {
		t.Fatalf("unexpected dead letters; got %d; want %d", got, dlq)
	}
	if got := msgs(t, admin, control.AuditStream); got != audit+1 {
		t.Fatalf("unexpected audit lines; got %d; want %d (the barrier only)", got, audit+1)
	}
	if got := msgs(t, admin, "KV_"+control.Bucket); got != ctrl+1 {
		t.Fatalf("unexpected control bucket writes; got %d; want %d (the barrier only)", got, ctrl+1)
	}
	if _, err := admin.js.Consumer(ctx, "BIDPULSE_EVENTS", consumer); err != nil {
		t.Fatalf("the service's consumer is gone: %v", err)
	}
	ikv, err := admin.js.KeyValue(ctx, InstancesBucket)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ikv.Get(ctx, consumer); err != nil || !strings.Contains(string(r.Value()), `"owner":"`+e.svc.owner+`"`) {
		t.Fatalf("the service's lease record was changed: %v", err)
	}
	if !e.svc.isReady() {
		t.Fatal("the service is no longer ready")
	}
	// Each refusal is counted by reason.
	_, body := e.do(t, "GET", "/metrics", "", "")
	for _, reason := range []string{"publish", "subscribe", "authentication"} {
		series := `bidpulse_nats_server_refused_total{reason="` + reason + `"} `
		i := strings.Index(string(body), series)
		if i < 0 || strings.HasPrefix(string(body[i+len(series):]), "0\n") {
			t.Fatalf("refusals for %s not counted in /metrics", reason)
		}
	}
}

// The service works fully with authentication on: ingest, dead letters,
// the control plane through the admin API (KV and audit), checkpoints kept
// in the object store; and a restart reuses the same credentials.
func TestNATSAuthServiceWorks(t *testing.T) {
	dir := t.TempDir()
	edit := func(o *Options) {
		o.DataDir = dir
		o.AdminToken = "tok"
		o.CheckpointInterval = 50 * time.Millisecond
		o.RemoteCheckpointInterval = 50 * time.Millisecond
	}
	e := startAuthService(t, edit)
	fi, err := os.Stat(filepath.Join(dir, NATSAuthDir))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("unexpected credentials directory: %v, %v; want mode 0700", fi, err)
	}
	seeds := map[string][]byte{}
	for _, u := range []string{NATSUserService, NATSUserProducer, NATSUserMonitor} {
		p := NATSSeedFile(dir, u)
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("unexpected seed file %s: %v, %v; want mode 0600", p, fi, err)
		}
		seeds[u], _ = os.ReadFile(p)
	}
	if _, err := os.Stat(filepath.Join(dir, NATSAuthDir, natsAccountsFile)); err != nil {
		t.Fatalf("no accounts file: %v", err)
	}

	jsPublish(t, e.nc, "a", [][]byte{
		[]byte(`[` + ev("i1", "impression", testNow, "c1", "", "p1") + `,` + ev("i1", "click", testNow, "c1", "", "p1") + `]`),
		[]byte(`{"id":"bad"}`),
	})
	waitCounted(t, e, 2)
	admin := connectAs(t, e, NATSUserService)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := msgs(t, admin, DLQStream); n != 1 {
			return fmt.Errorf("%d dead letters; want 1", n)
		}
		return nil
	})
	if code, b := e.do(t, "PUT", "/v1/overrides", "tok", `{"campaign":"c1","placement":"p1","multiplier":1.5}`); code != 200 {
		t.Fatalf("unexpected status of an override %d: %s", code, b)
	}
	if n := msgs(t, admin, control.AuditStream); n != 1 {
		t.Fatalf("unexpected audit lines; got %d; want 1", n)
	}
	obs, err := admin.js.ObjectStore(t.Context(), CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		_, err := obs.GetInfo(t.Context(), ingest.ConsumerName("test")+".ckpt")
		return err
	})
	e.nc.Close()
	if err := e.svc.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	again := startAuthService(t, edit)
	for u, want := range seeds {
		if got, _ := os.ReadFile(NATSSeedFile(dir, u)); string(got) != string(want) {
			t.Fatalf("the %s seed changed on restart", u)
		}
	}
	if m := again.getJSON(t, "/v1/multiplier?campaign=c1&placement=p1", 200); m["multiplier"] != 1.5 {
		t.Fatalf("override lost on restart: %v", m)
	}
	if m := again.getJSON(t, "/v1/rates?campaign=c1&placement=p1", 200); num(t, m, "windows.1h.clicks") != 1 {
		t.Fatalf("windows lost on restart: %v", m)
	}
}

// Core mode with authentication: the producer's events reach the service's
// subscription across the accounts. And a second instance shares the first
// one's embedded server as the bidpulse user (--nats-url, --nats-nkey).
func TestNATSAuthCoreModeAndSecondInstance(t *testing.T) {
	core := startAuthService(t, func(o *Options) { o.JetStream = JetStreamFalse })
	core.publish(t, ev("i1", "impression", testNow, "c1", "", ""))
	core.waitReceived(t, 1)

	first := startAuthService(t, func(o *Options) { o.AdminToken = "tok" })
	seed := NATSSeedFile(first.svc.opts.DataDir, NATSUserService)
	second := startTestService(t, func(o *Options) {
		o.AdminToken = "tok"
		o.Instance = "second"
		o.NATSURL = first.svc.NATSURL()
		o.NATSClient = natsauth.Config{NkeyFile: seed}
	})
	if code, b := second.do(t, "PUT", "/v1/overrides", "tok", `{"campaign":"c1","multiplier":1.5}`); code != 200 {
		t.Fatalf("unexpected status of an override %d: %s", code, b)
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if m := first.getJSON(t, "/v1/multiplier?campaign=c1", 200); m["multiplier"] != 1.5 {
			return fmt.Errorf("first instance answers %v", m["multiplier"])
		}
		return nil
	})
}

// The monitor reads the state and changes nothing.
func TestNATSAuthMonitorReadsOnly(t *testing.T) {
	e := startAuthService(t, func(o *Options) { o.AdminToken = "tok" })
	jsPublish(t, e.nc, "m", [][]byte{[]byte(ev("i1", "impression", testNow, "c1", "", "p1")), []byte(`not json`)})
	waitCounted(t, e, 1)
	if code, b := e.do(t, "PUT", "/v1/overrides", "tok", `{"campaign":"c1","placement":"p1","multiplier":1.5}`); code != 200 {
		t.Fatalf("unexpected status of an override %d: %s", code, b)
	}
	admin := connectAs(t, e, NATSUserService)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := msgs(t, admin, DLQStream); n != 1 {
			return fmt.Errorf("%d dead letters; want 1", n)
		}
		return nil
	})
	akv, err := admin.js.KeyValue(t.Context(), control.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := akv.Keys(t.Context())
	if err != nil || len(keys) != 1 {
		t.Fatalf("unexpected control keys %v, %v; want the override's", keys, err)
	}
	want, err := akv.Get(t.Context(), keys[0])
	if err != nil {
		t.Fatal(err)
	}

	mon := connectAs(t, e, NATSUserMonitor)
	ctx := t.Context()
	// What it reads.
	if ai, err := mon.js.AccountInfo(ctx); err != nil || ai.Streams < 5 {
		t.Fatalf("unexpected account info; got %+v, %v", ai, err)
	}
	st, err := mon.js.Stream(ctx, "BIDPULSE_EVENTS")
	if err != nil || st.CachedInfo().State.Msgs != 2 {
		t.Fatalf("unexpected stream info; got %v", err)
	}
	consumer := ingest.ConsumerName("test")
	if _, err := mon.js.Consumer(ctx, "BIDPULSE_EVENTS", consumer); err != nil {
		t.Fatalf("cannot read the consumer's info: %v", err)
	}
	kv, err := mon.js.KeyValue(ctx, control.Bucket)
	if err != nil {
		t.Fatalf("cannot open the control bucket: %v", err)
	}
	if got, err := kv.Get(ctx, keys[0]); err != nil || string(got.Value()) != string(want.Value()) {
		t.Fatalf("unexpected override read; got %v; want %s", err, want.Value())
	}
	ikv, err := mon.js.KeyValue(ctx, InstancesBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ikv.Get(ctx, consumer); err != nil {
		t.Fatalf("cannot read the instance record: %v", err)
	}
	for _, s := range []string{DLQStream, control.AuditStream} {
		st, err := mon.js.Stream(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.GetMsg(ctx, 1); err != nil {
			t.Fatalf("cannot read %s: %v", s, err)
		}
	}
	ctrl, audit := msgs(t, admin, "KV_"+control.Bucket), msgs(t, admin, control.AuditStream)

	// What it cannot do.
	if _, err := kv.Put(short(t), control.KillKey, []byte(`{"enabled":true}`)); err == nil {
		t.Fatal("unexpected KV put by the monitor")
	}
	mon.expectRefused(t, "Publish to", "$KV.bidpulse_control.killswitch")
	if err := mon.js.DeleteStream(short(t), "BIDPULSE_EVENTS"); err == nil {
		t.Fatal("unexpected stream delete by the monitor")
	}
	mon.expectRefused(t, "Publish to", "$JS.API.STREAM.DELETE.BIDPULSE_EVENTS")
	if _, err := mon.nc.RequestWithContext(short(t), "$JS.API.STREAM.PURGE.BIDPULSE_EVENTS", nil); err == nil {
		t.Fatal("unexpected answer to a purge by the monitor")
	}
	if _, err := mon.js.CreateOrUpdateConsumer(short(t), "BIDPULSE_EVENTS", jetstream.ConsumerConfig{Durable: "spy"}); err == nil {
		t.Fatal("unexpected consumer created by the monitor")
	}
	if _, err := mon.nc.RequestWithContext(short(t), "$JS.API.STREAM.MSG.GET.BIDPULSE_EVENTS", []byte(`{"seq":1}`)); err == nil {
		t.Fatal("unexpected read of the events by the monitor")
	}
	mon.expectRefused(t, "Publish to", "$JS.API.STREAM.MSG.GET.BIDPULSE_EVENTS")
	if obs, err := mon.js.ObjectStore(ctx, CheckpointBucket); err == nil {
		if _, err := obs.GetBytes(short(t), consumer+".ckpt"); err == nil {
			t.Fatal("unexpected read of a checkpoint by the monitor")
		}
	}
	if err := mon.nc.Publish("bidpulse.events.test", []byte(ev("x", "impression", testNow, "c1", "", ""))); err != nil {
		t.Fatal(err)
	}
	mon.expectRefused(t, "Publish to", "bidpulse.events.test")
	if _, err := mon.nc.SubscribeSync("bidpulse.events.>"); err != nil {
		t.Fatal(err)
	}
	mon.expectRefused(t, "Subscription to", "bidpulse.events.>")

	// Reply-subject injection through the API: an answer goes back to the
	// monitor's account, never to a subject of the service's.
	probe, err := mon.nc.SubscribeSync("_INBOX.probe")
	if err != nil {
		t.Fatal(err)
	}
	spy, err := admin.nc.SubscribeSync("_INBOX.probe")
	if err != nil {
		t.Fatal(err)
	}
	for _, reply := range []string{"$KV.bidpulse_control.killswitch", control.AuditSubject, "_INBOX.probe"} {
		if err := mon.nc.PublishMsg(&nats.Msg{Subject: "$JS.API.STREAM.INFO.BIDPULSE_EVENTS", Reply: reply}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := probe.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("no answer to the monitor's reply subject: %v", err)
	}
	if err := admin.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := spy.NextMsg(0); err == nil {
		t.Fatalf("the service's account got the monitor's answer: %.100s", m.Data)
	}
	if _, err := akv.Get(ctx, control.KillKey); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the kill switch key was written; got %v", err)
	}
	if got := msgs(t, admin, "KV_"+control.Bucket); got != ctrl {
		t.Fatalf("the control bucket changed; got %d messages; want %d", got, ctrl)
	}
	if got := msgs(t, admin, control.AuditStream); got != audit {
		t.Fatalf("the audit log changed; got %d lines; want %d", got, audit)
	}
	if got := msgs(t, admin, "BIDPULSE_EVENTS"); got != 2 {
		t.Fatalf("the event stream changed; got %d messages; want 2", got)
	}
}

// Turning authentication on keeps the streams, the control bucket and the
// windows of a service that ran without it, and turning it off again too.
func TestNATSAuthSwitchKeepsState(t *testing.T) {
	dir := t.TempDir()
	run := func(mode string, check func(e *testEnv)) {
		t.Helper()
		e := startTestService(t, func(o *Options) { o.DataDir = dir; o.AdminToken = "tok"; o.NATSServerAuth = mode })
		check(e)
		e.nc.Close()
		if err := e.svc.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	kept := func(e *testEnv) {
		t.Helper()
		if m := e.getJSON(t, "/v1/multiplier?campaign=c1&placement=p1", 200); m["multiplier"] != 1.5 {
			t.Fatalf("override lost: %v", m)
		}
		if m := e.getJSON(t, "/v1/rates?campaign=c1&placement=p1", 200); num(t, m, "windows.1h.impressions") != 1 {
			t.Fatalf("windows lost: %v", m)
		}
		// The stream held the event at start: the same stream.
		if st, _ := e.svc.ingest.Stream(); st.TargetSeq != 1 {
			t.Fatalf("unexpected last sequence of the event stream at start; got %d; want 1", st.TargetSeq)
		}
	}
	run(NATSAuthOff, func(e *testEnv) {
		jsPublish(t, e.nc, "s", [][]byte{[]byte(ev("i1", "impression", testNow, "c1", "", "p1"))})
		waitCounted(t, e, 1)
		if code, b := e.do(t, "PUT", "/v1/overrides", "tok", `{"campaign":"c1","placement":"p1","multiplier":1.5}`); code != 200 {
			t.Fatalf("unexpected status of an override %d: %s", code, b)
		}
	})
	run(NATSAuthOn, kept)
	run(NATSAuthOff, kept)
}

// The embedded listener with TLS: a producer that trusts its CA publishes;
// one that does not is refused; the service's own in-process connection
// needs no TLS.
func TestNATSServerTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t, dir, "nats")
	cert, key := ca.Server(t, "server")
	// Not startTestService: its client would not trust the test CA.
	svc, err := New(Options{
		HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:-1", DataDir: t.TempDir(), Instance: "test", DedupSize: 32 << 20,
		Logger: testLogger(t), Clock: NewManualClock(testNow),
		NATSServerAuth: NATSAuthOn, NATSServerTLSCert: cert, NATSServerTLSKey: key,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(); err != nil {
		t.Fatalf("cannot start the service: %v", err)
	}
	t.Cleanup(func() { svc.Stop(context.Background()) })
	e := &testEnv{svc: svc}
	url := e.svc.NATSURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("unexpected client URL %q; want tls://", url)
	}
	connect := func(c natsauth.Config) (*nats.Conn, error) {
		opts, err := c.Options()
		if err != nil {
			t.Fatal(err)
		}
		return nats.Connect(url, append(opts, nats.MaxReconnects(0), nats.Timeout(5*time.Second))...)
	}
	producer := NATSSeedFile(e.svc.opts.DataDir, NATSUserProducer)
	nc, err := connect(natsauth.Config{NkeyFile: producer, TLSCA: ca.CAFile})
	if err != nil {
		t.Fatalf("cannot connect with the server's CA: %v", err)
	}
	defer nc.Close()
	jsPublish(t, nc, "tls", [][]byte{[]byte(ev("i1", "impression", testNow, "c1", "", ""))})
	waitCounted(t, e, 1)
	if nc, err := connect(natsauth.Config{NkeyFile: producer}); err == nil {
		nc.Close()
		t.Fatal("unexpected connection without the server's CA")
	} else if !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("unexpected error without the server's CA: %v", err)
	}
	if nc, err := nats.Connect(strings.Replace(url, "tls://", "nats://", 1), nats.MaxReconnects(0), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("unexpected connection without TLS")
	}
}
