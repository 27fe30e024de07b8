package partition

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream is what the events stream needs to store each message under its campaign's partition:
// the one subject it binds and its subject transform. See the package doc for why the stream
// binds <base>.*.> only.
type Stream struct {
	// Subject is the subject the stream binds: <base>.*.>, the shape the transform matches.
	Subject string
	// Transform stores <base>.<campaign>.<rest> as <p>.<base>.<campaign>.<rest>, with
	// p = Of(P, campaign): source <base>.*.>, destination
	// {{partition(P,1)}}.<base>.{{wildcard(1)}}.>.
	Transform jetstream.SubjectTransformConfig
}

// StreamTransform returns the subject and the transform of an events stream with p partitions
// whose producers publish under base (e.g. "bidpulse.events"). p is fixed when the stream is
// created: changing it moves almost every campaign to another partition.
//
// It refuses p == 0 (the server would put everything in partition 0), p above math.MaxInt32
// (the server refuses it), and a base that is not a literal subject or that has a token starting
// with '$' or "{{", which the server would read in the destination as a mapping function.
func StreamTransform(p uint32, base string) (Stream, error) {
	if p == 0 || p > math.MaxInt32 {
		return Stream{}, fmt.Errorf("cannot partition the stream under %q into %d partitions: want 1..%d", base, p, math.MaxInt32)
	}
	if err := checkBase(base); err != nil {
		return Stream{}, err
	}
	return Stream{
		Subject: base + ".*.>",
		Transform: jetstream.SubjectTransformConfig{
			Source:      base + ".*.>",
			Destination: "{{partition(" + strconv.FormatUint(uint64(p), 10) + ",1)}}." + base + ".{{wildcard(1)}}.>",
		},
	}, nil
}

// Apply sets cfg's subjects and subject transform to s, replacing whatever cfg had: a stream that
// also bound <base>.<campaign>, or any other subject, would store those messages outside every
// partition.
func (s Stream) Apply(cfg *jetstream.StreamConfig) {
	cfg.Subjects = []string{s.Subject}
	t := s.Transform
	cfg.SubjectTransform = &t
}

// Filter returns the consumer filter subject that selects partition p's messages in a stream
// built with StreamTransform(P, base), for any P > p.
func Filter(p uint32, base string) string {
	return strconv.FormatUint(uint64(p), 10) + "." + base + ".>"
}

// FromSubject parses a subject stored by a stream built with StreamTransform(P, base), of the form
// <p>.<base>.<campaign>.<rest>, and returns its partition and campaign. ok is false for any other
// subject: p not a canonical decimal uint32 (no sign, no leading zero), another base, a campaign
// that CheckCampaign refuses, or no rest. It does not know P: the caller checks p < P and, when
// it trusts neither producer nor stream, that Of(P, campaign) == p.
//
// campaign is a substring of stored (no copy, no allocation).
func FromSubject(base, stored string) (p uint32, campaign string, ok bool) {
	p, published, ok := Published(base, stored)
	if !ok {
		return 0, "", false
	}
	campaign, rest, found := strings.Cut(published[len(base)+1:], ".")
	if !found || CheckCampaign(campaign) != nil || !validRest(rest) {
		return 0, "", false
	}
	return p, campaign, true
}

// Published splits a stored subject <p>.<base>.<...> into its partition
// and the subject as the producer published it, <base>.<...>, whatever
// follows the base (FromSubject checks that).
func Published(base, stored string) (p uint32, published string, ok bool) {
	ps, after, found := strings.Cut(stored, ".")
	if !found {
		return 0, "", false
	}
	p, ok = parsePartition(ps)
	if !ok {
		return 0, "", false
	}
	rest, found := strings.CutPrefix(after, base)
	if !found || base == "" || len(rest) < 2 || rest[0] != '.' {
		return 0, "", false
	}
	return p, after, true
}

// parsePartition parses the decimal the server writes with strconv.Itoa: digits only, no leading
// zero unless it is "0", at most math.MaxUint32.
func parsePartition(s string) (uint32, bool) {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}

// validRest reports whether rest is one or more tokens of a published subject: none empty, no
// whitespace, no wildcard token.
func validRest(rest string) bool {
	if rest == "" {
		return false
	}
	for t := range strings.SplitSeq(rest, ".") {
		if t == "" || t == "*" || t == ">" || strings.ContainsAny(t, " \t\r\n\f") {
			return false
		}
	}
	return true
}

// checkBase returns an error unless base is a literal subject whose tokens the server will copy
// as they are into the transform's destination.
func checkBase(base string) error {
	if base == "" {
		return errors.New("cannot partition the stream: empty base subject")
	}
	for t := range strings.SplitSeq(base, ".") {
		switch {
		case t == "" || t == "*" || t == ">" || strings.ContainsAny(t, " \t\r\n\f\x00"):
			return fmt.Errorf("cannot partition the stream under %q: token %q is not a literal subject token", base, t)
		case t[0] == '$' || strings.HasPrefix(t, "{{"):
			return fmt.Errorf("cannot partition the stream under %q: token %q would be read as a mapping function", base, t)
		}
	}
	return nil
}
