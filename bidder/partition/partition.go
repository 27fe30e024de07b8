// Package partition is the groundwork of scale-out by campaign: it says which of P partitions a
// campaign belongs to, and how the events stream stores that partition in each message's
// subject, so that every instance, producer and test agrees with nats-server on the answer.
//
// The partition is the one nats-server's subject transform computes for `{{partition(P,1)}}`:
// the FNV-1a 32-bit hash of the campaign token's bytes, mod P. The server computes it when a
// message enters the stream; Of computes the same number in Go, so that an instance can tell
// which partition a campaign (and a bid for it) belongs to without asking NATS.
//
// Subjects. A producer publishes to <base>.<campaign>.<rest> (base "bidpulse.events", rest one or
// more tokens, e.g. the producer's name: bidpulse.events.c42.publish), and the stream stores the
// message as <p>.<base>.<campaign>.<rest>, so that the owner of partition p consumes it with the
// filter <p>.<base>.>. The rest is required, because a stream has exactly one subject transform
// (nats-server v2.15 and its main branch; nats.go v1.56.0's jetstream.StreamConfig has one
// SubjectTransform, only sources and mirrors take a list) and one transform cannot match both
// <base>.<campaign> and <base>.<campaign>.<rest>: "*" matches one token and ">" at least one.
// Worse, the server stores a subject that the transform does not match unchanged ("no
// filtering", server/stream.go), so a stream that bound both shapes would keep the short one
// outside every partition, where no owner would ever read it. StreamTransform therefore binds
// only <base>.*.>: a JetStream publish to <base>.<campaign> finds no stream and the producer
// gets jetstream.ErrNoStreamResponse ("nats: no response from stream"), a clear error instead of
// a misplaced event (a core NATS publish to it is lost unacknowledged, as to any subject no stream
// binds).
//
// A campaign must be a single subject token to be partitioned (CheckCampaign): no '.', no
// whitespace, not "*" or ">". Campaigns that are not (the event format allows any UTF-8) need an
// encoding into a token before they can be published partitioned; that is not decided here.
//
// The service uses it with --partitions (bidder/ingest, partitioned.go): the stream's transform,
// and the check that each event's campaign is the one its stored subject names. Single-partition
// mode (any subject under bidpulse.events.>) stays the default.
package partition

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// FNV-1a 32-bit parameters (offset basis and prime), as in hash/fnv.
const (
	fnvOffset32 = 2166136261
	fnvPrime32  = 16777619
)

// Of returns the partition of campaign among p partitions: FNV-1a 32-bit of the campaign's bytes,
// mod p. This is exactly what nats-server's subject transform writes for {{partition(p,i)}} when
// the i-th wildcard is the campaign token (nats-server v2.15.2, server/subject_transform.go:
// getHashPartition hashes the key that TransformTokenizedSubject builds). Mind what that key is:
//   - with token positions, partition(p,1,2) hashes the named tokens' bytes concatenated with no
//     separator ("a","b" hashes like "ab");
//   - with none, the shorthand partition(p) hashes the whole subject with its dots.
//
// StreamTransform names exactly one token, the campaign, so the hash is of the campaign's bytes
// alone, with no base and no separator. For p == 0, Of returns 0, as the server does; the server
// refuses a p above math.MaxInt32 in a transform, so such a p has no server counterpart.
//
// Of does not allocate and is safe for concurrent use. It does not check that campaign is a
// valid token (CheckCampaign does): a campaign with a '.' would be split by the server and get
// another partition than this one.
func Of(p uint32, campaign []byte) uint32 {
	return of(p, campaign)
}

// OfString is Of for a campaign held in a string (a query parameter, a parsed event's field).
func OfString(p uint32, campaign string) uint32 {
	return of(p, campaign)
}

func of[T string | []byte](p uint32, campaign T) uint32 {
	if p == 0 {
		return 0
	}
	h := uint32(fnvOffset32)
	for i := 0; i < len(campaign); i++ {
		h ^= uint32(campaign[i])
		h *= fnvPrime32
	}
	return h % p
}

// CheckCampaign returns an error saying why campaign cannot be the campaign token of a
// partitioned subject, or nil when it can. The rules are nats-server's for a token of a
// published subject (sublist.go: isValidSubject and isValidLiteralSubject): not empty, no '.'
// (it would split into several tokens, and the server would hash the first one only), no space,
// tab, CR, LF or form feed (they end the subject in the protocol), and not "*" or ">" alone (the
// server refuses a wildcard in a published subject; "a*b" is a literal token). A NUL byte and
// invalid UTF-8 are refused too: the server's file store drops a stored subject holding either
// as corrupt when it rebuilds its index (filestore.go).
func CheckCampaign(campaign string) error {
	switch {
	case campaign == "":
		return errors.New("cannot partition an empty campaign")
	case campaign == "*" || campaign == ">":
		return fmt.Errorf("cannot partition campaign %q: it is a NATS wildcard", campaign)
	case !utf8.ValidString(campaign):
		return fmt.Errorf("cannot partition campaign %q: it is not valid UTF-8", campaign)
	}
	if i := strings.IndexAny(campaign, ". \t\r\n\f\x00"); i >= 0 {
		return fmt.Errorf("cannot partition campaign %q: byte %q at offset %d cannot be in a NATS subject token", campaign, campaign[i], i)
	}
	return nil
}
