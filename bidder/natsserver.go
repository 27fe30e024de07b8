package bidder

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// startEmbeddedNATS starts an in-process nats-server listening on addr with
// JetStream on and its store under dataDir/nats. Port 0 means 4222 to
// nats-server; -1 picks a free port.
func startEmbeddedNATS(addr, dataDir, name string, log zerolog.Logger, edit func(*server.Options)) (*server.Server, error) {
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
	opts := &server.Options{
		ServerName: name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(dataDir, "nats"),
		NoSigs:     true,
		MaxPayload: maxMessageBytes,
	}
	if edit != nil {
		edit(opts)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cannot create embedded NATS server: %w", err)
	}
	srv.SetLoggerV2(natsLogger{log: log.With().Str("component", "nats-server").Logger()}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded NATS server on %s not ready after 10s (is the port in use?)", addr)
	}
	return srv, nil
}

// natsLogger adapts zerolog to nats-server's Logger interface.
type natsLogger struct{ log zerolog.Logger }

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
func (l natsLogger) Errorf(format string, v ...any) { l.log.Error().Msgf(format, v...) }
func (l natsLogger) Debugf(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Tracef(format string, v ...any) { l.log.Trace().Msgf(format, v...) }

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
