package bidder

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/bidpulse/bidpulse/bidder/brain"
	"github.com/bidpulse/bidpulse/bidder/ingest"
	"github.com/bidpulse/bidpulse/bidder/natsauth"
	"github.com/bidpulse/bidpulse/bidder/partition"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/rs/zerolog"
)

// DLQSubject is where rejected payloads are republished, each with a
// Bidpulse-Reject-Reason header.
const DLQSubject = ingest.DLQSubject

// JetStream modes of Options.JetStream.
const (
	JetStreamAuto  = ingest.JetStreamAuto
	JetStreamTrue  = ingest.JetStreamTrue
	JetStreamFalse = ingest.JetStreamFalse
)

// DLQStream captures the dead letters so none is lost when nobody listens.
const DLQStream = ingest.DLQStream

// maxMessageBytes is the largest event message the stream accepts (and the
// embedded server's max payload).
const maxMessageBytes = ingest.MaxMessageBytes

// Options configure one Service. The zero value of a field means its
// default (see Defaults); Clock is required.
type Options struct {
	// HTTPAddr is the API listen address (default ":8080"; "127.0.0.1:0"
	// picks a free port, see Service.HTTPAddr).
	HTTPAddr string
	// NATSURL, when set, is the comma-separated URL list of an existing NATS
	// server or cluster. When empty, an embedded nats-server is started.
	NATSURL string
	// NATSAddr is the embedded server's client listen address (default
	// 127.0.0.1:4222; port -1 picks a free port).
	NATSAddr string
	// NATSClient is how the service authenticates to the external server
	// of NATSURL and verifies it (credentials, TLS). Refused without
	// NATSURL: the embedded server's users are bidpulse's own (see
	// NATSServerAuth).
	NATSClient natsauth.Config
	// NATSServerAuth says whether the embedded server requires
	// authentication: NATSAuthOn, NATSAuthOff or NATSAuthAuto (the
	// default: on when NATSAddr is not loopback only). With it on, the
	// server accepts only its three nkey users, whose seeds are generated
	// at the first start under DataDir/nats-auth (see NATSUserService).
	NATSServerAuth string
	// NATSServerInsecure lets the embedded server listen beyond loopback
	// without authentication, which is refused otherwise.
	NATSServerInsecure bool
	// NATSBids serves the bid routes over NATS request-reply too (a
	// nats.go/micro service, see natsbids.go): NATSBidsOn, NATSBidsOff or
	// NATSBidsAuto (the default: on with the embedded server, off with an
	// external one, whose permissions bidpulse does not know).
	NATSBids string
	// NATSServerTLSCert and NATSServerTLSKey (PEM files, both or neither)
	// make the embedded server's listener require TLS. The service's own
	// connection is in-process and needs none.
	NATSServerTLSCert string
	NATSServerTLSKey  string
	// DataDir holds the embedded server's JetStream store (default ./data).
	DataDir string
	// Subject is the event subject the service subscribes to (default
	// bidpulse.events.>). It must not match DLQSubject.
	Subject string
	// Partitions, when above 0, splits the events by campaign into that many
	// partitions (docs/SCALING.md): the stream stores a message published to
	// <base>.<campaign>.<rest> (base: Subject without its trailing ".>") under
	// the campaign's partition, and an event of another campaign than its
	// subject's is rejected wrong_partition. It needs JetStream ingest and is
	// fixed when the stream is created (an existing stream made with another
	// value is refused at start). 0, the default: one partition, events on any
	// subject under Subject.
	Partitions uint32
	// Instance names this replica (default: the host name).
	Instance string
	// Unit makes this Service one partition unit of a cluster member
	// (bidder/node): it consumes only partition Partition of the
	// Partitions, with its own durable consumer, lease and checkpoints
	// (named after Instance, which names the partition, not the member),
	// loads only its own checkpoints from NATS, trims only its partition
	// of the stream, serves no HTTP listener (the member calls ServeHTTP),
	// and answers bids over NATS on UnitBidSubject(Partition).
	Unit      bool
	Partition uint32
	// Replica makes a partition unit one of its partition's replicas
	// (replica.go): it consumes the partition and answers its bids as the
	// primary does, but runs no controllers (it adopts the states the
	// primary publishes), writes no checkpoint and trims nothing; it
	// starts from the newest checkpoint of Primary, the instance name of
	// the partition's primary unit. Its own Instance names its consumer and
	// its record (ReplicaLeaseKey), which holds the stream for it.
	Replica bool
	Primary string
	// StartTimeout bounds Start's requests to NATS and JetStream (default
	// 30s). A JetStream request that gets no reply (sent while a cluster
	// elects a leader, or racing another's creation of the same stream)
	// waits all of it: a cluster member starting many units retries with a
	// short one instead.
	StartTimeout time.Duration
	// Replicas is the replica count of what bidpulse keeps in JetStream:
	// the event and DLQ streams, the consumers, the KV buckets and the
	// checkpoints' Object Store (0: 1; 3 on a 3-node cluster).
	Replicas int
	// AdminToken, when set, enables the admin API (overrides, policies,
	// the kill switch, the audit log) with this one secret, named "admin" in
	// the audit log. AdminTokens adds named secrets: comma-separated
	// name:secret pairs ("alice:s3cret,ci:t0ken"), each audited under its
	// name.
	AdminToken  string
	AdminTokens string
	// ControlKey signs the control records (overrides, policies, the kill
	// switch) this instance writes to the KV bucket, so that the instances
	// sharing the bucket tell them from records written by anything else
	// (audited as "nats-kv"). Instances sharing a bucket should share it;
	// empty: a key generated once in DataDir/control.key.
	ControlKey string
	// MaxKeys caps the live keys over all rollups (default 1,000,000).
	MaxKeys int
	// MaxKeyStates caps the answering keys with guardrail state (default
	// 200,000), MaxCampaignStates the campaigns with controller state or
	// learned delays (default 100,000). A key or campaign past the cap is
	// answered as a new one and counted in bidpulse_brain_untracked_total.
	MaxKeyStates      int
	MaxCampaignStates int
	// DedupSize is the memory, in bytes, of the (type, id) dedup cache
	// (default 64 MiB, at least 32 MiB).
	DedupSize int
	// PendingMsgs and PendingBytes are the core subscription's buffer
	// limits; past them the NATS client drops messages and counts them
	// (default 1,000,000 messages and 1 GiB).
	PendingMsgs  int
	PendingBytes int
	// SSEInterval is how often GET /v1/snapshot/stream computes and pushes
	// a frame to the dashboard (default 1s).
	SSEInterval time.Duration
	// MaxSSEStreams bounds the open snapshot streams (default 64); past it
	// a new stream is refused with a 503.
	MaxSSEStreams int
	// HTTPMaxConns caps the open HTTP connections (default 8192; -1: no
	// cap). Past it a new connection is answered a JSON 503 with
	// Retry-After and closed, before any of its bytes is read.
	HTTPMaxConns int
	// HTTPMaxConnsPerIP caps the open HTTP connections from one client
	// address, an IPv6 /64 counting as one (default 1024; -1: no cap).
	// Past it a new connection is answered a JSON 429 and closed. Behind a
	// proxy that does not keep client addresses, every connection comes
	// from the proxy: raise it or turn it off.
	HTTPMaxConnsPerIP int
	// HTTPReadTimeout bounds the reading of one request, headers and body,
	// from its first byte (for a new connection, from its opening), so a
	// client that trickles a request loses its connection (default 10s).
	HTTPReadTimeout time.Duration
	// HTTPIdleTimeout is how long a keep-alive connection may wait for its
	// next request (default 1m).
	HTTPIdleTimeout time.Duration
	// HTTPMaxHeaderBytes bounds a request's line and headers, query string
	// included: fasthttp's per-connection read buffer (default 16 KiB, at
	// least 4 KiB). Past it, a JSON 431.
	HTTPMaxHeaderBytes int
	// ReadToken, when set, is required (Authorization: Bearer) by the read
	// endpoints: /v1/rates, /v1/snapshot and its stream, /v1/stats, GET
	// /v1/policies, /metrics, /debug/runtime, and explain on the bid
	// endpoints. One secret, or name:secret pairs separated by commas, as
	// AdminToken; an admin token is accepted too. See http_auth.go.
	ReadToken string
	// SnapshotScanRate bounds the keys the snapshot scans visit per second,
	// over all queries (default 1,000,000; -1: no bound). Past it, GET
	// /v1/snapshot answers 503 with Retry-After and the streams keep their
	// last scan.
	SnapshotScanRate int
	// JetStream selects the ingest mode: "auto" (default: JetStream when
	// the server offers it, which the embedded one does), "true" or
	// "false" (a core subscription: at-most-once, lowest latency).
	JetStream string
	// Stream is the event stream's name (default BIDPULSE_EVENTS).
	Stream string
	// StreamMaxBytes bounds the event stream (default 8 GiB; -1: no
	// limit). A full stream refuses new events (DiscardNew) instead of
	// deleting unconsumed ones.
	StreamMaxBytes int64
	// StreamMaxAge, when set, also trims the stream by age (default 0:
	// none). Trimming by age drops unconsumed events without telling the
	// producer; the stream is trimmed to the oldest checkpoint instead.
	StreamMaxAge time.Duration
	// StreamDuplicates is the stream's Nats-Msg-Id dedup window (default 2m).
	StreamDuplicates time.Duration
	// DLQMaxBytes bounds the dead-letter stream (default 1 GiB; oldest first out).
	DLQMaxBytes int64
	// DLQRaw keeps each rejected payload verbatim in its dead letter, and so
	// whatever personal data a producer put in it (fields outside the schema:
	// user ids, IP addresses), for the DLQ's 7 days. Off by default: a letter
	// keeps the event's known fields, its reason and a keyed hash of the
	// payload (docs/EVENTS.md).
	DLQRaw bool
	// CheckpointInterval is how often the state is checkpointed in
	// JetStream mode (default 30s); a checkpoint is also written on Stop.
	CheckpointInterval time.Duration
	// FetchBatch is how many messages the consumer asks for at once
	// (default 1000).
	FetchBatch int
	// FetchBytes caps the bytes of one pull (default 16 MiB, at least
	// twice the largest message): the deliveries in flight stay under the
	// server's slow-consumer limit (max_pending, 64 MiB by default).
	FetchBytes int
	// RemoteCheckpointInterval is how often a checkpoint is also kept in
	// NATS (the checkpoints Object Store bucket), for an instance whose
	// local checkpoint is gone (default 2m; -1: never). The stream is
	// trimmed up to the oldest such checkpoint of the instances sharing it.
	RemoteCheckpointInterval time.Duration
	// LeaseTTL is how long an instance name stays taken by a running
	// instance that stopped renewing it (default 15s).
	LeaseTTL time.Duration
	// Takeover starts even when another running instance holds the name,
	// which then stops consuming.
	Takeover bool
	// StallAfter is how long ingest may go without applying a message while
	// the stream holds messages past it before it is reported stalled
	// (default 30s).
	StallAfter time.Duration
	// RetentionGrace is how long the stream keeps what a stopped instance
	// that shares it needs to recover (default 1h); past it, that instance
	// no longer holds the stream's trim back.
	RetentionGrace time.Duration
	// AckWait is the consumer's redelivery timeout (default 30s).
	AckWait time.Duration
	// Config is what is aggregated and how multipliers are computed.
	Config Config
	// Logger receives the service's logs.
	Logger zerolog.Logger
	// Clock gives the time to the windows, the policy and the stats.
	Clock Clock
	// ControlInterval is the control tick: how often the controllers
	// (goal, pacing, guardrails, prior fits) advance (default 1m).
	ControlInterval time.Duration
	// EvictInterval is how often idle keys and expired overrides are
	// removed (default 1m).
	EvictInterval time.Duration
	// applyHook, when set (tests only), is called before each message is
	// applied, with its stream sequence (0 in core mode).
	applyHook func(seq uint64)
	// routeHook, when set (tests only), is called with the route of every
	// request that passed the router's checks, just before its handler.
	routeHook func(route int)
	// natsServerHook (tests only) edits the embedded server's options;
	// wrapNATSConn (tests only) wraps the in-process connections to it.
	natsServerHook func(*server.Options)
	wrapNATSConn   func(net.Conn) net.Conn
	// natsAuth is NATSServerAuth decided (withDefaults): whether the
	// embedded server requires authentication.
	natsAuth bool
	// natsBids is NATSBids decided (withDefaults).
	natsBids bool
	// noFinalCheckpoint (tests only) skips the checkpoint on Stop, as if
	// the process had been killed.
	noFinalCheckpoint bool
	// ShutdownTimeout bounds the wait for in-flight HTTP requests and the
	// subscription drain on Stop (default 10s).
	ShutdownTimeout time.Duration
}

const (
	defaultHTTPAddr  = ":8080"
	defaultNATSAddr  = "127.0.0.1:4222"
	defaultDataDir   = "./data"
	defaultSubject   = "bidpulse.events.>"
	defaultMaxKeys   = 1_000_000
	defaultDedupSize = 64 << 20
	minDedupSize     = 32 << 20
	// minUnitDedupSize is a partition unit's least dedup size: a
	// member's dedup memory is shared by its units.
	minUnitDedupSize = 1 << 20
)

// withDefaults returns o with every zero field set to its default, or an
// error naming the first invalid field.
func (o Options) withDefaults() (Options, error) {
	if o.HTTPAddr == "" {
		o.HTTPAddr = defaultHTTPAddr
	}
	if o.NATSAddr == "" {
		o.NATSAddr = defaultNATSAddr
	}
	if o.DataDir == "" {
		o.DataDir = defaultDataDir
	}
	if o.Subject == "" {
		o.Subject = defaultSubject
	}
	if err := checkSubject(o.Subject); err != nil {
		return o, err
	}
	if o.ControlKey != "" && len(o.ControlKey) < 16 {
		return o, errors.New("invalid control key: want at least 16 bytes (a secret shared by the instances of one KV bucket)")
	}
	if err := o.decideNATSBids(); err != nil {
		return o, err
	}
	if o.natsBids {
		for _, b := range natsBidSubjects() {
			if subjectMatches(o.Subject, b) {
				return o, fmt.Errorf("invalid subject %q: it matches the bid subject %s of --nats-bids (bid requests would be read as events)", o.Subject, b)
			}
		}
	}
	if err := o.checkNATSSecurity(); err != nil {
		return o, err
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = defaultMaxKeys
	}
	if o.MaxKeyStates == 0 {
		o.MaxKeyStates = brain.DefaultMaxKeys
	}
	if o.MaxKeyStates < 0 {
		return o, fmt.Errorf("invalid max-key-states %d: must be positive", o.MaxKeyStates)
	}
	if o.MaxCampaignStates == 0 {
		o.MaxCampaignStates = brain.DefaultMaxCampaigns
	}
	if o.MaxCampaignStates < 0 {
		return o, fmt.Errorf("invalid max-campaign-states %d: must be positive", o.MaxCampaignStates)
	}
	if o.MaxKeys < 0 {
		return o, fmt.Errorf("invalid max-keys %d: must be positive", o.MaxKeys)
	}
	if o.DedupSize == 0 {
		o.DedupSize = defaultDedupSize
	}
	if err := checkReplicaOptions(&o); err != nil {
		return o, err
	}
	if o.DedupSize < minDedupSize && !(o.Unit && o.DedupSize >= minUnitDedupSize) {
		return o, fmt.Errorf("invalid dedup-size %d: must be at least %d bytes (32 MiB)", o.DedupSize, minDedupSize)
	}
	if o.PendingMsgs == 0 {
		o.PendingMsgs = 1_000_000
	}
	if o.PendingBytes == 0 {
		o.PendingBytes = 1 << 30
	}
	switch o.JetStream {
	case "":
		o.JetStream = JetStreamAuto
	case JetStreamAuto, JetStreamTrue, JetStreamFalse:
	default:
		return o, fmt.Errorf("invalid jetstream %q: want auto, true or false", o.JetStream)
	}
	if o.Stream == "" {
		o.Stream = "BIDPULSE_EVENTS"
	}
	if err := o.checkPartitions(); err != nil {
		return o, err
	}
	if o.StreamMaxBytes == 0 {
		o.StreamMaxBytes = 8 << 30
	}
	if o.StreamMaxAge < 0 {
		return o, fmt.Errorf("invalid stream-max-age %s: must not be negative", o.StreamMaxAge)
	}
	if o.StreamDuplicates == 0 {
		o.StreamDuplicates = 2 * time.Minute
	}
	if o.DLQMaxBytes == 0 {
		o.DLQMaxBytes = 1 << 30
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = 30 * time.Second
	}
	if o.CheckpointInterval < 0 {
		return o, fmt.Errorf("invalid checkpoint-interval %s: must be positive", o.CheckpointInterval)
	}
	if o.FetchBatch <= 0 {
		o.FetchBatch = 1000
	}
	if o.FetchBytes == 0 {
		o.FetchBytes = 2 * maxMessageBytes
	}
	if o.FetchBytes < maxMessageBytes {
		return o, fmt.Errorf("invalid fetch-bytes %d: must be at least the largest message, %d", o.FetchBytes, maxMessageBytes)
	}
	if o.RemoteCheckpointInterval == 0 {
		o.RemoteCheckpointInterval = 2 * time.Minute
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 15 * time.Second
	}
	if o.StallAfter <= 0 {
		o.StallAfter = 30 * time.Second
	}
	if o.RetentionGrace <= 0 {
		o.RetentionGrace = time.Hour
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.EvictInterval <= 0 {
		o.EvictInterval = time.Minute
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.ControlInterval <= 0 {
		o.ControlInterval = time.Minute
	}
	if err := o.httpDefaults(); err != nil {
		return o, err
	}
	if o.Config.Rollups == nil {
		o.Config = DefaultConfig()
	}
	if o.Clock == nil {
		return o, errors.New("Options.Clock is required")
	}
	return o, nil
}

// NATSBids values.
const (
	NATSBidsOn   = "on"
	NATSBidsOff  = "off"
	NATSBidsAuto = "auto"
)

// decideNATSBids decides natsBids from NATSBids and the mode.
func (o *Options) decideNATSBids() error {
	switch o.NATSBids {
	case NATSBidsOn:
		o.natsBids = true
	case NATSBidsOff:
		o.natsBids = false
	case "", NATSBidsAuto:
		o.NATSBids = NATSBidsAuto
		o.natsBids = o.NATSURL == ""
	default:
		return fmt.Errorf("invalid nats-bids %q: want on, off or auto", o.NATSBids)
	}
	return nil
}

// checkNATSSecurity checks the NATS security settings against the mode
// (embedded or external server) and decides natsAuth.
func (o *Options) checkNATSSecurity() error {
	if o.NATSURL != "" {
		switch {
		case o.NATSServerAuth == NATSAuthOn || o.NATSServerAuth == NATSAuthOff:
			return fmt.Errorf("nats-auth %s is for the embedded NATS server, which does not run with --nats-url; the external server's own configuration says who may connect", o.NATSServerAuth)
		case o.NATSServerInsecure:
			return errors.New("nats-insecure is for the embedded NATS server, which does not run with --nats-url")
		case o.NATSServerTLSCert != "" || o.NATSServerTLSKey != "":
			return errors.New("nats-server-tls-cert and nats-server-tls-key are for the embedded NATS server, which does not run with --nats-url; " +
				"to verify an external server, use nats-tls-ca")
		}
		return o.NATSClient.CheckURL(o.NATSURL)
	}
	if !o.NATSClient.IsZero() {
		return errors.New("NATS client credentials and TLS settings (nats-creds, nats-nkey, nats-user, nats-token, nats-tls-*) are for an external server (--nats-url); " +
			"the embedded server's users are generated under the data dir (--nats-auth on) and its TLS is nats-server-tls-cert and nats-server-tls-key")
	}
	if (o.NATSServerTLSCert == "") != (o.NATSServerTLSKey == "") {
		return errors.New("nats-server-tls-cert and nats-server-tls-key go together: give both or neither")
	}
	if o.NATSServerAuth == "" {
		o.NATSServerAuth = NATSAuthAuto
	}
	var err error
	o.natsAuth, err = embeddedAuth(o.NATSServerAuth, o.NATSAddr, o.NATSServerInsecure)
	return err
}

// checkSubject refuses an event subject that is not a valid NATS subject or
// that would also receive the dead letters (and so consume its own output).
func checkSubject(subject string) error {
	if !validSubject(subject) {
		return fmt.Errorf("invalid subject %q: not a valid NATS subject", subject)
	}
	if subjectMatches(subject, DLQSubject) {
		return fmt.Errorf("invalid subject %q: it matches the dead-letter subject %s", subject, DLQSubject)
	}
	return nil
}

func validSubject(s string) bool {
	if s == "" {
		return false
	}
	toks := splitTokens(s)
	for i, t := range toks {
		if t == "" {
			return false
		}
		for j := 0; j < len(t); j++ {
			if c := t[j]; c == ' ' || c == '\t' || c == '\r' || c == '\n' {
				return false
			}
		}
		if t == ">" && i != len(toks)-1 {
			return false
		}
	}
	return true
}

// subjectMatches reports whether the subscription filter matches subject.
func subjectMatches(filter, subject string) bool {
	f, s := splitTokens(filter), splitTokens(subject)
	for i, ft := range f {
		if ft == ">" {
			return len(s) > i
		}
		if i >= len(s) {
			return false
		}
		if ft != "*" && ft != s[i] {
			return false
		}
	}
	return len(f) == len(s)
}

func splitTokens(s string) []string {
	var toks []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			toks = append(toks, s[start:i])
			start = i + 1
		}
	}
	return append(toks, s[start:])
}

// checkPartitions refuses partitions without JetStream ingest or with a
// subject the stream cannot partition (see ingest.Base and
// partition.StreamTransform). A server without JetStream is refused when
// the service connects (JetStream auto).
func (o *Options) checkPartitions() error {
	if o.Partitions == 0 {
		return nil
	}
	if o.JetStream == JetStreamFalse {
		return fmt.Errorf("invalid partitions %d with jetstream false: partitions need JetStream ingest (the stream stores each event under its campaign's partition)", o.Partitions)
	}
	base, ok := ingest.Base(o.Subject)
	if !ok {
		return fmt.Errorf("invalid partitions %d with subject %q: the subject must end in \".>\" (producers publish to <base>.<campaign>.<anything>)", o.Partitions, o.Subject)
	}
	if _, err := partition.StreamTransform(o.Partitions, base); err != nil {
		return fmt.Errorf("invalid partitions %d: %w", o.Partitions, err)
	}
	return nil
}
