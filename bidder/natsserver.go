package bidder

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/bidder/logthrottle"
)

// embeddedNATS is how the embedded nats-server is set up.
type embeddedNATS struct {
	// addr is the client listen address; port 0 means 4222 to
	// nats-server, -1 picks a free port.
	addr    string
	dataDir string
	name    string
	// users, when set, are the only clients the server accepts (see
	// NATSUserService); nil: no authentication.
	users *natsUsers
	names natsNames
	// tlsCert and tlsKey, when set, make the listener require TLS.
	tlsCert, tlsKey string
	log             zerolog.Logger
	// refused, when set, counts and throttles the lines about refused clients.
	refused *natsRefusals
	// edit (tests only) changes the server's options last.
	edit func(*server.Options)
}

// startEmbeddedNATS starts an in-process nats-server with JetStream on and
// its store under dataDir/nats.
func startEmbeddedNATS(e embeddedNATS) (*server.Server, error) {
	addr := e.addr
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("invalid nats-addr %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < -1 || port > 65535 {
		return nil, fmt.Errorf("invalid nats-addr %q: bad port", addr)
	}
	if port > 0 {
		// nats-server reports a busy port only through its logger; find
		// out here so the error says so at once.
		ln, err := net.Listen("tcp", net.JoinHostPort(host, portStr))
		if err != nil {
			return nil, fmt.Errorf("cannot listen on nats-addr %s: %w", addr, err)
		}
		ln.Close()
	}
	opts := &server.Options{}
	account := server.DEFAULT_GLOBAL_ACCOUNT
	if e.users != nil {
		conf, err := e.users.accountsConfig(e.names)
		if err != nil {
			return nil, err
		}
		if err := opts.ProcessConfigString(conf); err != nil {
			return nil, fmt.Errorf("BUG: the generated NATS accounts do not parse: %w", err)
		}
		err = writeFileAtomic(filepath.Join(e.users.dir, natsAccountsFile), func(w io.Writer) (int64, error) {
			n, err := io.WriteString(w, conf)
			return int64(n), err
		})
		if err != nil {
			return nil, fmt.Errorf("cannot write the NATS accounts file: %w", err)
		}
		account = natsAccountService
	}
	opts.ServerName = e.name
	opts.Host, opts.Port = host, port
	opts.JetStream = true
	opts.StoreDir = filepath.Join(e.dataDir, "nats")
	opts.NoSigs = true
	opts.MaxPayload = maxMessageBytes
	if e.tlsCert != "" {
		pair, err := tls.LoadX509KeyPair(e.tlsCert, e.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("cannot use nats-server-tls-cert %s with nats-server-tls-key %s: %w", e.tlsCert, e.tlsKey, err)
		}
		opts.TLS = true
		opts.TLSTimeout = 2 // seconds
		opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	if err := moveJetStreamAccount(opts.StoreDir, account, e.log); err != nil {
		return nil, err
	}
	if e.edit != nil {
		e.edit(opts)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cannot create embedded NATS server: %w", err)
	}
	srv.SetLoggerV2(natsLogger{log: e.log.With().Str("component", "nats-server").Logger(), refused: e.refused}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded NATS server on %s not ready after 10s (is the port in use?)", addr)
	}
	return srv, nil
}

// moveJetStreamAccount makes the streams of the other of the two accounts
// the embedded server may run the service in (the global account without
// authentication, BIDPULSE with it) those of account, by renaming its
// directory in the store: turning authentication on or off keeps the
// events, the control bucket and the checkpoints kept in NATS.
func moveJetStreamAccount(storeDir, account string, log zerolog.Logger) error {
	from := server.DEFAULT_GLOBAL_ACCOUNT
	if account == from {
		from = natsAccountService
	}
	src := filepath.Join(storeDir, "jetstream", from)
	dst := filepath.Join(storeDir, "jetstream", account)
	if !hasStreams(src) {
		return nil
	}
	if hasStreams(dst) {
		return fmt.Errorf("the embedded NATS store holds streams of both account %s (%s) and account %s (%s): "+
			"bidpulse uses %s with --nats-auth %s; move or remove the other", from, src, account, dst, account, map[bool]string{true: "on", false: "off"}[account == natsAccountService])
	}
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("cannot move the NATS store of account %s to %s: %w", from, account, err)
	}
	if err := os.Rename(src, dst); err != nil {
		return fmt.Errorf("cannot move the NATS store of account %s to %s: %w", from, account, err)
	}
	log.Warn().Str("from", src).Str("to", dst).
		Msg("NATS authentication changed: the streams, KV buckets and object store moved to the account the service now uses")
	return nil
}

// hasStreams reports whether an account's JetStream directory holds a stream.
func hasStreams(accountDir string) bool {
	entries, err := os.ReadDir(filepath.Join(accountDir, "streams"))
	return err == nil && len(entries) > 0
}

// NATS authentication modes of the embedded server (Options.NATSServerAuth).
const (
	NATSAuthAuto = "auto"
	NATSAuthOn   = "on"
	NATSAuthOff  = "off"
)

// embeddedAuth decides whether the embedded server listening on addr
// requires authentication: always with "on", never with "off", and with
// "auto" when it listens beyond loopback. Listening beyond loopback
// without authentication is refused unless insecure: anyone who reaches
// the port could then change the control bucket, delete the streams and
// read the dead letters and the audit log.
func embeddedAuth(mode, addr string, insecure bool) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("invalid nats-addr %q: %w", addr, err)
	}
	loopback := isLoopbackHost(host)
	switch mode {
	case NATSAuthOn:
		return true, nil
	case NATSAuthAuto:
		return !loopback, nil
	case NATSAuthOff:
		if !loopback && !insecure {
			return false, fmt.Errorf("the embedded NATS server would listen on %s, beyond loopback, without authentication: "+
				"anyone who reaches it could change the overrides and the kill switch, delete the event stream and read the dead letters; "+
				"use --nats-auth on (or auto), or give --nats-insecure to accept this", addr)
		}
		return false, nil
	}
	return false, fmt.Errorf("invalid nats-auth %q: want auto, on or off", mode)
}

// isLoopbackHost reports whether a listen host is loopback only: localhost
// or a loopback address. An empty host (every interface) or any other name
// is not.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// natsLogger adapts zerolog to nats-server's Logger interface.
type natsLogger struct {
	log zerolog.Logger
	// refused, when set, takes the server's lines about refused clients.
	refused *natsRefusals
}

func (l natsLogger) Noticef(format string, v ...any) {
	// A slow consumer is a notice to nats-server; here it means lost
	// deliveries, so it is worth a warning.
	if strings.HasPrefix(format, "Slow Consumer") {
		l.log.Warn().Msgf(format, v...)
		return
	}
	l.log.Debug().Msgf(format, v...)
}
func (l natsLogger) Warnf(format string, v ...any)  { l.log.Warn().Msgf(format, v...) }
func (l natsLogger) Fatalf(format string, v ...any) { l.log.Error().Msgf(format, v...) }
func (l natsLogger) Errorf(format string, v ...any) {
	if l.refused != nil && l.refused.take(format, v) {
		return
	}
	l.log.Error().Msgf(format, v...)
}
func (l natsLogger) Debugf(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Tracef(format string, v ...any) { l.log.Trace().Msgf(format, v...) }

// natsRefusals counts what the embedded server refuses its clients, by
// reason, and logs it at most once per reason per throttle interval: a
// misbehaving or hostile client must not flood the log.
type natsRefusals struct {
	warn    *logthrottle.Log
	reasons []natsRefusal
}

type natsRefusal struct {
	// marker is the text of nats-server's log line for this reason.
	marker string
	reason string
	n      *metrics.Counter
}

func newNATSRefusals(set *metrics.Set, warn *logthrottle.Log) *natsRefusals {
	r := &natsRefusals{warn: warn}
	for _, x := range [][2]string{
		{"Publish Violation", "publish"},
		{"Subscription Violation", "subscribe"},
		{server.ErrAuthentication.Error(), "authentication"},
		{"TLS handshake error", "tls"},
	} {
		r.reasons = append(r.reasons, natsRefusal{marker: x[0], reason: x[1],
			n: set.NewCounter(`bidpulse_nats_server_refused_total{reason="` + x[1] + `"}`)})
	}
	return r
}

// take counts and logs the server's line if it is about a refusal.
func (r *natsRefusals) take(format string, v []any) bool {
	for i := range r.reasons {
		x := &r.reasons[i]
		if strings.Contains(format, x.marker) {
			x.n.Inc()
			r.warn.Warn("nats-refused-"+x.reason, "embedded NATS server refused a client ("+x.reason+
				"; counted in bidpulse_nats_server_refused_total, repeats logged at most every 10s)", fmt.Errorf(format, v...))
			return true
		}
	}
	return false
}

// inProcessProvider hands nats.go the embedded server's in-process
// connections, through wrap when set (tests: a reader that can be paused).
type inProcessProvider struct {
	srv  *server.Server
	wrap func(net.Conn) net.Conn
}

func (p inProcessProvider) InProcessConn() (net.Conn, error) {
	c, err := p.srv.InProcessConn()
	if err != nil || p.wrap == nil {
		return c, err
	}
	return p.wrap(c), nil
}
