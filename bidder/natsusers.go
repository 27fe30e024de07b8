package bidder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bidpulse/bidpulse/bidder/control"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"
)

// The embedded NATS server's users, when it requires authentication. Each
// is an nkey user whose seed is kept in NATSAuthDir under the data dir, one
// file per user, <user>.nk, created at the first start and reused after.
//
// Each user lives in an account of its own, and the accounts share only
// what the others need, through service exports and imports:
//
//   - NATSUserService ("bidpulse", account BIDPULSE) is the service. The
//     account holds every stream, consumer, KV bucket and object store;
//     the user may do anything with them (the JetStream API, acks, flow
//     control, the KV and object store subjects, the DLQ and audit
//     subjects) and subscribe to its inboxes and the event subject. These
//     are the admin credentials too.
//   - NATSUserProducer ("producer", account PRODUCERS) may publish on the
//     event subject (core, or JetStream with its acknowledgement back to
//     its inbox), ask for the account info and the stream names (so that a
//     client finds the stream that captures its subject), and subscribe to
//     its inboxes. Nothing else: no KV, no stream or consumer change, no
//     read of any stream, no other subject.
//   - NATSUserMonitor ("monitor", account MONITOR) may read: the account
//     info; stream and consumer names, lists and info; the messages of the
//     control and instances KV buckets (by key or sequence) and of the DLQ
//     and audit streams (by sequence). It can create nothing (not even an
//     ephemeral consumer, so no `nats kv watch` or `nats stream view`) and
//     write nothing; it cannot read the event stream nor the checkpoints,
//     but it reads the dead letters: rejected events' known fields, and
//     with --dlq-raw their payloads.
//
// Why accounts and not only permissions: inside one account, a JetStream
// acknowledgement (or any JetStream API answer) goes to whatever reply
// subject the publisher gave, with the server's rights, not the
// publisher's. A producer allowed to publish events could otherwise give
// $KV.bidpulse_control.killswitch as its reply subject and have the
// server write its acknowledgement into the control bucket (or into the
// audit log, or over an instance's lease). Across a service import the
// reply subject is mapped to one that only leads back to the requester's
// account, so such a reply lands where it can do nothing.
const (
	NATSAuthDir      = "nats-auth"
	NATSUserService  = "bidpulse"
	NATSUserProducer = "producer"
	NATSUserMonitor  = "monitor"

	natsAccountService  = "BIDPULSE"
	natsAccountProducer = "PRODUCERS"
	natsAccountMonitor  = "MONITOR"
	// natsAccountsFile is the server configuration the embedded server
	// runs with, written beside the seeds for reference (public keys only):
	// an external nats-server can include it to get the same users.
	natsAccountsFile = "accounts.conf"
)

// NATSSeedFile returns the path of a user's nkey seed file under dataDir.
func NATSSeedFile(dataDir, user string) string {
	return filepath.Join(dataDir, NATSAuthDir, user+".nk")
}

// natsUser is one user's key pair and where its seed is kept.
type natsUser struct {
	name string
	file string
	kp   nkeys.KeyPair
	pub  string
}

// natsUsers are the embedded server's users.
type natsUsers struct {
	dir                        string
	service, producer, monitor natsUser
	// created names the users whose seeds this start generated.
	created []string
}

// loadNATSUsers reads the users' seeds under dataDir, creating the
// directory (0700) and any seed file that does not exist yet (0600).
func loadNATSUsers(dataDir string, log zerolog.Logger) (*natsUsers, error) {
	dir := filepath.Join(dataDir, NATSAuthDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the NATS credentials directory: %w", err)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn().Str("dir", dir).Str("mode", fi.Mode().Perm().String()).
			Msg("the NATS credentials directory is open to other users of this machine: chmod 700 it")
	}
	u := &natsUsers{dir: dir,
		service:  natsUser{name: NATSUserService},
		producer: natsUser{name: NATSUserProducer},
		monitor:  natsUser{name: NATSUserMonitor},
	}
	for _, p := range []*natsUser{&u.service, &u.producer, &u.monitor} {
		p.file = NATSSeedFile(dataDir, p.name)
		created, err := p.load(log)
		if err != nil {
			return nil, err
		}
		if created {
			u.created = append(u.created, p.name)
		}
	}
	return u, nil
}

// load reads the user's seed, or generates it when its file does not exist.
func (p *natsUser) load(log zerolog.Logger) (created bool, err error) {
	b, err := os.ReadFile(p.file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if b, err = p.create(); err != nil {
			return false, err
		}
		created = true
	case err != nil:
		return false, fmt.Errorf("cannot read the NATS %s user's seed: %w", p.name, err)
	default:
		if fi, err := os.Stat(p.file); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn().Str("file", p.file).Str("mode", fi.Mode().Perm().String()).
				Msg("a NATS seed file is readable by other users of this machine: chmod 600 it")
		}
	}
	defer clear(b)
	if p.kp, err = nkeys.ParseDecoratedUserNKey(b); err != nil {
		return false, fmt.Errorf("cannot use the NATS %s user's seed %s: %w (remove the file to generate a new one)", p.name, p.file, err)
	}
	if p.pub, err = p.kp.PublicKey(); err != nil {
		return false, fmt.Errorf("cannot use the NATS %s user's seed %s: %w", p.name, p.file, err)
	}
	return created, nil
}

// create generates a seed and writes it, complete and synced, under its
// name (0600); a file another process wrote meanwhile wins.
func (p *natsUser) create() ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("cannot generate the NATS %s user's nkey: %w", p.name, err)
	}
	// Seed returns the key pair's own bytes: wiped with it, once written.
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("cannot generate the NATS %s user's nkey: %w", p.name, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p.file), "."+p.name+".nk-*") // 0600
	if err != nil {
		return nil, fmt.Errorf("cannot write the NATS %s user's seed: %w", p.name, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(append([]byte(nil), seed...), '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), p.file)
		if errors.Is(err, fs.ErrExist) {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot write the NATS %s user's seed %s: %w", p.name, p.file, err)
	}
	return os.ReadFile(p.file)
}

// natsNames are the subjects and stream names the users' rights name.
type natsNames struct {
	subject string // the event subject
	stream  string // the event stream
}

// accountsConfig renders the server configuration of the three accounts
// and their users (see NATSUserService).
func (u *natsUsers) accountsConfig(n natsNames) (string, error) {
	for _, s := range []string{n.subject, n.stream} {
		if strings.ContainsAny(s, "\"\\") {
			return "", fmt.Errorf("cannot configure the NATS users for %q: it has a character a server configuration cannot quote", s)
		}
	}
	// What the service needs: the JetStream API, its acks and flow
	// control, its KV buckets and object store, the DLQ and audit subjects.
	servicePub := []string{"$JS.API.>", "$JS.ACK.>", "$JS.FC.>",
		"$KV." + control.Bucket + ".>", "$KV." + InstancesBucket + ".>", "$O." + CheckpointBucket + ".>",
		DLQSubject, control.AuditSubject, "$SRV.>"}
	// Bids over NATS (natsbids.go): the service subscribes to the bid
	// subjects and to micro's discovery subjects, and answers on the
	// requests' reply subjects (allow_responses: only a reply to a request
	// it received). Publishing on $SRV.> is for operators, who discover
	// the service with the bidpulse user (nats micro ls).
	serviceSub := append([]string{"_INBOX.>", n.subject, "$SRV.>"}, natsBidSubjects()...)
	// What finding the event stream needs: nats.go's StreamNameBySubject.
	// Importing $JS.API.INFO also keeps the server from answering every
	// other JetStream request of the account with "not enabled": they get
	// no responders.
	producerAPI := []string{"$JS.API.INFO", "$JS.API.STREAM.NAMES"}
	monitorAPI := []string{"$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST", "$JS.API.STREAM.INFO.*",
		"$JS.API.CONSUMER.NAMES.*", "$JS.API.CONSUMER.LIST.*", "$JS.API.CONSUMER.INFO.*.*"}
	for _, b := range []string{"KV_" + control.Bucket, "KV_" + InstancesBucket} {
		monitorAPI = append(monitorAPI, "$JS.API.DIRECT.GET."+b, "$JS.API.DIRECT.GET."+b+".>", "$JS.API.STREAM.MSG.GET."+b)
	}
	monitorAPI = append(monitorAPI, "$JS.API.STREAM.MSG.GET."+DLQStream, "$JS.API.STREAM.MSG.GET."+control.AuditStream)

	var b strings.Builder
	b.WriteString("# The embedded NATS server's accounts and users, generated by bidpulse serve at each start\n" +
		"# from the seeds beside this file (only their public keys are here). See bidder/natsusers.go.\n")
	b.WriteString("accounts {\n")
	fmt.Fprintf(&b, "  %s {\n    jetstream: enabled\n", natsAccountService)
	writeUser(&b, u.service.pub, servicePub, serviceSub, true)
	b.WriteString("    exports: [\n")
	fmt.Fprintf(&b, "      {service: %q, accounts: [%s]}\n", n.subject, natsAccountProducer)
	// Ad servers request bids with the producer user: the bid subjects are
	// services of the account, imported by PRODUCERS like the event
	// subject. $SRV discovery stays with the bidpulse user.
	for _, s := range natsBidSubjects() {
		fmt.Fprintf(&b, "      {service: %q, accounts: [%s]}\n", s, natsAccountProducer)
	}
	exported := map[string]bool{}
	for _, s := range append(append([]string(nil), producerAPI...), monitorAPI...) {
		if exported[s] {
			continue
		}
		exported[s] = true
		var to []string
		if slices.Contains(producerAPI, s) {
			to = append(to, natsAccountProducer)
		}
		if slices.Contains(monitorAPI, s) {
			to = append(to, natsAccountMonitor)
		}
		fmt.Fprintf(&b, "      {service: %q, accounts: [%s]}\n", s, strings.Join(to, ", "))
	}
	b.WriteString("    ]\n  }\n")

	fmt.Fprintf(&b, "  %s {\n", natsAccountProducer)
	producerPub := append(append([]string{n.subject}, natsBidSubjects()...), producerAPI...)
	writeUser(&b, u.producer.pub, producerPub, []string{"_INBOX.>"}, false)
	writeImports(&b, producerPub)
	b.WriteString("  }\n")

	fmt.Fprintf(&b, "  %s {\n", natsAccountMonitor)
	writeUser(&b, u.monitor.pub, monitorAPI, []string{"_INBOX.>"}, false)
	writeImports(&b, monitorAPI)
	b.WriteString("  }\n}\n")
	return b.String(), nil
}

// writeUser writes an account's one nkey user and the subjects it may
// publish and subscribe to; responses lets it answer the requests it
// receives (one reply each, on the request's reply subject).
func writeUser(b *strings.Builder, nkey string, pubs, subs []string, responses bool) {
	fmt.Fprintf(b, "    users: [{\n      nkey: %q\n      permissions: {\n", nkey)
	fmt.Fprintf(b, "        publish: {allow: %s}\n        subscribe: {allow: %s}\n", quoteList(pubs), quoteList(subs))
	if responses {
		b.WriteString("        allow_responses: true\n")
	}
	b.WriteString("      }\n    }]\n")
}

// writeImports imports the service account's exports of subjects.
func writeImports(b *strings.Builder, subjects []string) {
	b.WriteString("    imports: [\n")
	for _, s := range subjects {
		fmt.Fprintf(b, "      {service: {account: %s, subject: %q}}\n", natsAccountService, s)
	}
	b.WriteString("    ]\n")
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// logUsers logs where the users' seeds are and, at the start that created
// them, how producers and the nats CLI use them. The seeds themselves are
// never logged: logs travel further than a 0600 file.
func (u *natsUsers) logUsers(log zerolog.Logger, clientURL string, n natsNames) {
	if len(u.created) == 0 {
		log.Info().Str("dir", u.dir).Msg("embedded NATS requires authentication: users bidpulse (the service), producer and monitor, their nkey seeds in dir")
		return
	}
	subject := exampleSubject(n.subject)
	log.Warn().Str("dir", u.dir).Strs("created", u.created).
		Str(NATSUserService, u.service.file).Str(NATSUserProducer, u.producer.file).Str(NATSUserMonitor, u.monitor.file).
		Str("publish_with", "bidpulse publish --nats-url "+clientURL+" --nats-nkey "+u.producer.file).
		Str("nats_cli_producer", "nats --server "+clientURL+" --nkey "+u.producer.file+" pub "+subject+` '{"id":"e1","type":"impression","campaign":"c1"}'`).
		Str("nats_cli_monitor", "nats --server "+clientURL+" --nkey "+u.monitor.file+" stream info "+n.stream).
		Msg("embedded NATS users created (first start with authentication): their nkey seed files are the credentials; " +
			"give producers the producer seed, keep the bidpulse seed (full control) to the service and its operators")
}

// exampleSubject turns a subscription subject into one a producer may
// publish on: each wildcard token becomes "c1".
func exampleSubject(subject string) string {
	toks := splitTokens(subject)
	for i, t := range toks {
		if t == "*" || t == ">" {
			toks[i] = "c1"
		}
	}
	return strings.Join(toks, ".")
}
