package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"

	"github.com/bidpulse/bidpulse/bidder"
	"github.com/bidpulse/bidpulse/bidder/node"
)

func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.Usage = usageWithEnv(fs, "Usage: bidpulse serve [flags]")
	var o bidder.Options
	fs.StringVar(&o.HTTPAddr, "http-addr", ":8080", "HTTP API listen address")
	fs.StringVar(&o.NATSURL, "nats-url", "", "NATS server or cluster URLs, comma-separated; empty: run an embedded NATS server")
	fs.StringVar(&o.NATSAddr, "nats-addr", "127.0.0.1:4222", "listen address of the embedded NATS server (port -1: random)")
	fs.StringVar(&o.NATSServerAuth, "nats-auth", bidder.NATSAuthAuto, "embedded NATS server: require authentication: on, off, or auto (on when --nats-addr is not loopback); "+
		"its users' nkey seeds are generated under --data-dir/nats-auth at the first start")
	fs.BoolVar(&o.NATSServerInsecure, "nats-insecure", false, "embedded NATS server: allow listening beyond loopback without authentication (refused otherwise)")
	fs.StringVar(&o.NATSBids, "nats-bids", bidder.NATSBidsAuto, "answer bids over NATS request-reply too (service \"bidpulse\", subjects bidpulse.v1.multiplier, bidpulse.v1.multipliers, bidpulse.v1.openrtb): on, off, or auto (on with the embedded server, off with --nats-url)")
	fs.StringVar(&o.NATSServerTLSCert, "nats-server-tls-cert", "", "embedded NATS server: PEM certificate of its listener, which then requires TLS (with --nats-server-tls-key)")
	fs.StringVar(&o.NATSServerTLSKey, "nats-server-tls-key", "", "embedded NATS server: PEM key of --nats-server-tls-cert")
	natsClient := natsClientFlags(fs)
	fs.StringVar(&o.DataDir, "data-dir", "./data", "directory for the embedded NATS server's JetStream store")
	fs.StringVar(&o.Subject, "subject", "bidpulse.events.>", "NATS subject of the events (must not match bidpulse.dlq)")
	partitions := fs.Uint("partitions", 0, "split the events by campaign into this many partitions (JetStream only; --subject must end in .>); "+
		"fixed when the stream is created (another value is refused at start: use a new --stream or delete the stream); "+
		"producers then publish to bidpulse.events.<campaign>.<anything>, and an event of another campaign than its subject's is rejected wrong_partition. "+
		"0: one partition, any subject under --subject")
	fs.StringVar(&o.Instance, "instance", "", "name of this replica (default: the host name); in --cluster mode the member's name, stable across restarts")
	clusterMode := fs.Bool("cluster", false, "run as one member of a cluster (docs/SCALING.md): the members share the --partitions of the stream, each owning a share, "+
		"and answer bids for every campaign, forwarding those of the others' partitions over NATS; needs --nats-url and --partitions")
	clusterBucket := fs.String("cluster-bucket", node.DefaultBucket, "KV bucket of the cluster members' leases (--cluster)")
	forwardTimeout := fs.Duration("forward-timeout", node.DefaultForwardTimeout, "--cluster: how long a bid forwarded to its partition's owner may take; past it the neutral multiplier is answered, marked and counted")
	replicas := fs.Int("replicas", 1, "--cluster: R, the members that own each partition: its primary runs its controllers and writes its checkpoints, "+
		"R-1 replicas consume it too and answer its bids from the controller states the primary publishes, and take over at once when it goes")
	fs.IntVar(&o.Replicas, "nats-replicas", 1, "replicas of what bidpulse keeps in JetStream: the streams, consumers, KV buckets and checkpoints (3 on a 3-node NATS cluster)")
	configPath := fs.String("config", "", "YAML config file: rollups, resolutions, policy (default: built-in defaults)")
	fs.StringVar(&o.AdminToken, "admin-token", "", "bearer token of the admin API (overrides, policies, kill switch, audit), named \"admin\"; prefer the environment (BIDPULSE_ADMIN_TOKEN) or --admin-token-file to the command line; empty: admin API disabled")
	fs.StringVar(&o.AdminTokens, "admin-tokens", "", "named admin tokens, comma-separated name:secret pairs, each audited under its name")
	adminTokenFile := fs.String("admin-token-file", "", "file holding the admin token (one line)")
	adminTokensFile := fs.String("admin-tokens-file", "", "file holding the named admin tokens, one name:secret per line")
	controlKeyFile := fs.String("control-key-file", "", "file holding the key that signs the control records in the KV bucket, shared by the instances of one bucket (default: <data-dir>/control.key, generated)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "json", "log format: json or console")
	fs.IntVar(&o.MaxKeys, "max-keys", 1_000_000, "maximum live keys over all rollups; events needing more are refused as overflow")
	fs.IntVar(&o.MaxKeyStates, "max-key-states", 200_000, "maximum answering keys with guardrail state; a key past it is answered as a new key and counted")
	fs.IntVar(&o.MaxCampaignStates, "max-campaign-states", 100_000, "maximum campaigns with controller state (goal, pacing, delay model); a campaign past it is answered without and counted")
	dedupSize := fs.String("dedup-size", "64MiB", "memory of the (type, id) dedup cache, e.g. 64MiB, 1GiB (at least 32MiB)")
	fs.IntVar(&o.PendingMsgs, "pending-msgs", 1_000_000, "core NATS subscription buffer, in messages; past it messages are dropped and counted")
	pendingBytes := fs.String("pending-bytes", "1GiB", "core NATS subscription buffer, in bytes")
	fs.StringVar(&o.JetStream, "jetstream", "auto", "ingest mode: auto (JetStream when the server offers it), true, false (core subscription: at-most-once)")
	fs.StringVar(&o.Stream, "stream", "BIDPULSE_EVENTS", "JetStream stream of the events")
	streamMaxBytes := fs.String("stream-max-bytes", "8GiB", "event stream size limit; a full stream refuses new events (-1: no limit)")
	fs.DurationVar(&o.StreamMaxAge, "stream-max-age", 0, "also trim the stream by age (0: no; an age limit drops unconsumed events without telling producers)")
	fs.DurationVar(&o.StreamDuplicates, "stream-duplicates", 2*time.Minute, "the stream's Nats-Msg-Id duplicate window")
	dlqMaxBytes := fs.String("dlq-max-bytes", "1GiB", "dead-letter stream size limit (oldest dropped first)")
	fs.BoolVar(&o.DLQRaw, "dlq-raw", false, "keep each rejected payload verbatim in its dead letter, with any personal data in it, for the DLQ's 7 days (default: the event's known fields and a keyed hash)")
	fs.DurationVar(&o.CheckpointInterval, "checkpoint-interval", 30*time.Second, "how often the state is checkpointed (JetStream mode)")
	fs.DurationVar(&o.RemoteCheckpointInterval, "remote-checkpoint-interval", 2*time.Minute, "how often a checkpoint is also kept in NATS, for an instance without a local one; the stream is trimmed up to it (-1ns: never)")
	fetchBytes := fs.String("fetch-bytes", "16MiB", "byte cap of one JetStream pull (at least 8MiB, the largest message)")
	fs.BoolVar(&o.Takeover, "takeover", false, "start even when a running instance holds the same --instance name (it stops consuming)")
	fs.DurationVar(&o.LeaseTTL, "lease-ttl", 15*time.Second, "how long an instance name stays taken by an instance that stopped renewing it")
	fs.DurationVar(&o.StallAfter, "stall-after", 30*time.Second, "report ingest stalled (and /readyz 503) after this long without progress while the stream holds messages")
	fs.DurationVar(&o.RetentionGrace, "retention-grace", time.Hour, "how long the stream keeps what a stopped instance sharing it needs to recover")
	fs.IntVar(&o.MaxSSEStreams, "sse-max-streams", 64, "most concurrent /v1/snapshot/stream clients (dashboards)")
	fs.DurationVar(&o.SSEInterval, "sse-interval", time.Second, "how often /v1/snapshot/stream pushes a snapshot")
	fs.IntVar(&o.HTTPMaxConns, "http-max-conns", bidder.DefaultHTTPMaxConns, "most open HTTP connections; past it a new one gets a JSON 503 (-1: no cap)")
	fs.IntVar(&o.HTTPMaxConnsPerIP, "http-max-conns-per-ip", bidder.DefaultHTTPMaxConnsPerIP, "most open HTTP connections per client address, an IPv6 /64 as one; past it a JSON 429 (-1: no cap; behind a proxy that hides client addresses, raise or turn off)")
	fs.DurationVar(&o.HTTPReadTimeout, "http-read-timeout", bidder.DefaultHTTPReadTimeout, "time to receive a whole request, headers and body, from its first byte (a new connection: from its opening)")
	fs.DurationVar(&o.HTTPIdleTimeout, "http-idle-timeout", bidder.DefaultHTTPIdleTimeout, "how long a keep-alive connection may wait for its next request")
	httpMaxHeaderBytes := fs.String("http-max-header-bytes", "16KiB", "largest request line and headers, query string included (at least 4KiB); past it a JSON 431")
	fs.StringVar(&o.ReadToken, "read-token", "", "bearer token of the read endpoints (rates, snapshots, stats, policies, metrics, explain); one secret or name:secret pairs; empty: they are open. Prefer --read-token-file or BIDPULSE_READ_TOKEN, which stay out of the process list")
	readTokenFile := fs.String("read-token-file", "", "file holding the read token (as --read-token; surrounding white space ignored)")
	fs.IntVar(&o.SnapshotScanRate, "snapshot-scan-rate", bidder.DefaultSnapshotScanRate, "keys per second the snapshot scans may visit, over all queries; past it /v1/snapshot answers 503 (-1: no bound)")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		return err
	}
	o.NATSClient = *natsClient
	if *partitions > math.MaxInt32 {
		return fmt.Errorf("invalid --partitions %d: want 0..%d", *partitions, math.MaxInt32)
	}
	o.Partitions = uint32(*partitions)
	for _, w := range natsSecretWarnings(args, o.NATSURL) {
		log.Warn().Msg(w)
	}
	if o.DedupSize, err = parseBytes(*dedupSize); err != nil {
		return fmt.Errorf("invalid --dedup-size: %w", err)
	}
	if o.PendingBytes, err = parseBytes(*pendingBytes); err != nil {
		return fmt.Errorf("invalid --pending-bytes: %w", err)
	}
	if *streamMaxBytes == "-1" {
		o.StreamMaxBytes = -1
	} else {
		n, err := parseBytes(*streamMaxBytes)
		if err != nil {
			return fmt.Errorf("invalid --stream-max-bytes: %w", err)
		}
		o.StreamMaxBytes = int64(n)
	}
	if o.FetchBytes, err = parseBytes(*fetchBytes); err != nil {
		return fmt.Errorf("invalid --fetch-bytes: %w", err)
	}
	if err := secretFromFile(&o.AdminToken, *adminTokenFile, "admin-token", "admin-token-file", ""); err != nil {
		return err
	}
	if err := secretFromFile(&o.AdminTokens, *adminTokensFile, "admin-tokens", "admin-tokens-file", ","); err != nil {
		return err
	}
	if err := secretFromFile(&o.ControlKey, *controlKeyFile, "control-key", "control-key-file", ""); err != nil {
		return err
	}
	if o.HTTPMaxHeaderBytes, err = parseBytes(*httpMaxHeaderBytes); err != nil {
		return fmt.Errorf("invalid --http-max-header-bytes: %w", err)
	}
	if err := secretFromFile(&o.ReadToken, *readTokenFile, "read-token", "read-token-file", ""); err != nil {
		return err
	}
	n, err := parseBytes(*dlqMaxBytes)
	if err != nil {
		return fmt.Errorf("invalid --dlq-max-bytes: %w", err)
	}
	o.DLQMaxBytes = int64(n)
	if o.Config, err = bidder.LoadConfig(*configPath); err != nil {
		return err
	}
	metrics.ExposeMetadata(true)
	clock := bidder.NewCachedClock(time.Millisecond)
	defer clock.Stop()
	o.Clock = clock
	o.Logger = log

	if *replicas != 1 && !*clusterMode {
		return fmt.Errorf("--replicas %d needs --cluster: a single instance owns every partition alone", *replicas)
	}
	if *clusterMode {
		return runMember(node.Options{Unit: o, Member: o.Instance, HTTPAddr: o.HTTPAddr, Bucket: *clusterBucket,
			LeaseTTL: o.LeaseTTL, ForwardTimeout: *forwardTimeout, Replicas: *replicas}, *configPath, log)
	}
	t0 := time.Now()
	svc, err := bidder.New(o)
	if err != nil {
		return err
	}
	if err := svc.Start(); err != nil {
		return err
	}
	log.Info().Str("http", svc.HTTPAddr()).Dur("took", time.Since(t0)).Msg("bidpulse started")

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var sig os.Signal
	for sig = range sigs {
		if sig != syscall.SIGHUP {
			break
		}
		// SIGHUP reloads the policies; a bad file keeps the running ones.
		cfg, err := bidder.LoadConfig(*configPath)
		if err == nil {
			err = svc.Reload(cfg)
		}
		if err != nil {
			log.Error().Err(err).Str("config", *configPath).Msg("reload refused; the running config stays")
		} else {
			log.Info().Str("config", *configPath).Msg("config reloaded")
		}
	}
	signal.Stop(sigs)
	log.Info().Str("signal", sig.String()).Msg("stopping")
	t0 = time.Now()
	if err := svc.Stop(context.Background()); err != nil {
		log.Error().Err(err).Msg("stopped with errors")
		return err
	}
	log.Info().Dur("took", time.Since(t0)).Msg("bidpulse stopped")
	return nil
}

// runMember runs one cluster member until SIGINT or SIGTERM.
func runMember(o node.Options, configPath string, log zerolog.Logger) error {
	t0 := time.Now()
	n, err := node.New(o)
	if err != nil {
		return err
	}
	// Before the start: a SIGHUP meanwhile (systemd's ExecReload) must not
	// end the process; it is handled once started.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	if err := n.Start(); err != nil {
		return err
	}
	log.Info().Str("http", n.HTTPAddr()).Str("member", o.Member).Dur("took", time.Since(t0)).Msg("bidpulse cluster member started")
	var sig os.Signal
	for sig = range sigs {
		if sig != syscall.SIGHUP {
			break
		}
		// SIGHUP reloads the policies of every unit; a bad file keeps the
		// running ones.
		cfg, err := bidder.LoadConfig(configPath)
		if err == nil {
			err = n.Reload(cfg)
		}
		if err != nil {
			log.Error().Err(err).Str("config", configPath).Msg("reload refused; the running config stays")
		} else {
			log.Info().Str("config", configPath).Msg("config reloaded on every partition unit")
		}
	}
	signal.Stop(sigs)
	log.Info().Str("signal", sig.String()).Msg("stopping: leaving the cluster")
	t0 = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		log.Error().Err(err).Msg("stopped with errors")
		return err
	}
	log.Info().Dur("took", time.Since(t0)).Msg("bidpulse cluster member stopped")
	return nil
}

func newLogger(level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", level)
	}
	var log zerolog.Logger
	switch format {
	case "json":
		log = zerolog.New(os.Stderr)
	case "console":
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly})
	default:
		return zerolog.Logger{}, fmt.Errorf("invalid --log-format %q: want json or console", format)
	}
	return log.Level(lvl).With().Timestamp().Logger(), nil
}

// parseBytes reads a size such as 64MiB, 1GiB, 500MB or 1048576.
func parseBytes(s string) (int, error) {
	units := []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := 1
	for _, u := range units {
		if len(s) > len(u.suffix) && s[len(s)-len(u.suffix):] == u.suffix {
			s, mult = s[:len(s)-len(u.suffix)], u.mult
			break
		}
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != s {
		return 0, fmt.Errorf("%q is not a size such as 64MiB", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}
