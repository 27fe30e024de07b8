package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidpulse/bidpulse/bidder/event"
	"github.com/bidpulse/bidpulse/bidder/partition"
	"github.com/bidpulse/bidpulse/windows"
)

// Partitioned mode (Options.Partitions > 0): the event stream stores each
// message under its campaign's partition (partition.StreamTransform), as
// <p>.<base>.<campaign>.<rest>, and every event of a message must be of the
// campaign its subject names, else it is rejected wrong_partition: an owner
// of some partitions (later) must never apply another partition's campaign.
// One instance consumes every partition, or (OnePartition) a partition unit
// of a cluster member consumes one.

// Base returns the base subject of a partitioned stream: subject without
// its trailing ".>" (bidpulse.events.> -> bidpulse.events), and false when
// subject does not end in ".>" (producers must be free to put the campaign
// and a rest after the base).
func Base(subject string) (string, bool) {
	base, ok := strings.CutSuffix(subject, ".>")
	return base, ok && base != ""
}

// partitionedStream returns the subject and transform of the events stream
// with o.Partitions partitions.
func partitionedStream(o *Options) (partition.Stream, error) {
	base, ok := Base(o.Subject)
	if !ok {
		return partition.Stream{}, fmt.Errorf("cannot partition subject %q: it must end in \".>\" (the stream stores <base>.<campaign>.<rest>)", o.Subject)
	}
	return partition.StreamTransform(o.Partitions, base)
}

// checkStreamPartitions refuses an existing events stream whose subjects and
// subject transform are not those of want (nil: an unpartitioned stream
// binding o.Subject). P is fixed when the stream is created: updating the
// transform would leave the messages stored before it under the old
// partitions, and a checkpoint's sequence would no longer mean what it did.
func checkStreamPartitions(o *Options, oc *jetstream.StreamConfig, want *partition.Stream) error {
	fix := fmt.Sprintf("to change it, start with another --stream name, or delete stream %s (its unconsumed events are lost) and start again", o.Stream)
	if want == nil {
		if oc.SubjectTransform != nil {
			return fmt.Errorf("stream %s stores its events under a partition (subject transform %s -> %s) but --partitions is 0; start with the --partitions it was created with; %s",
				o.Stream, oc.SubjectTransform.Source, oc.SubjectTransform.Destination, fix)
		}
		return nil
	}
	if oc.SubjectTransform == nil {
		return fmt.Errorf("stream %s exists without partitions (subjects %v) but --partitions is %d: the number of partitions is fixed when the stream is created; %s",
			o.Stream, oc.Subjects, o.Partitions, fix)
	}
	t := oc.SubjectTransform
	if t.Source != want.Transform.Source || t.Destination != want.Transform.Destination || !slices.Equal(oc.Subjects, []string{want.Subject}) {
		return fmt.Errorf("stream %s was created with other partitions (subjects %v, transform %s -> %s) than --partitions %d and --subject %s ask for (transform %s -> %s): the number of partitions is fixed when the stream is created; %s",
			o.Stream, oc.Subjects, t.Source, t.Destination, o.Partitions, o.Subject, want.Transform.Source, want.Transform.Destination, fix)
	}
	return nil
}

// gapSubject is the subject filter that selects every message of the events
// stream (classifyGap): o.Subject unpartitioned, *.<base>.> partitioned,
// where every stored subject starts with its partition, and <p>.<base>.>
// for the one partition p of Options.OnePartition (also the consumer's
// filter).
func gapSubject(o *Options) string {
	if o.Partitions == 0 {
		return o.Subject
	}
	base, _ := Base(o.Subject)
	if o.OnePartition {
		return partition.Filter(o.Partition, base)
	}
	return "*." + base + ".>"
}

// setSubject sets the current message's subject (and, partitioned, the
// campaign it names), before applyMsg. Partitioned, stored is
// <p>.<base>.<campaign>.<rest>: the dead letters name the subject the
// producer published to, <base>.<campaign>.<rest>, which `bidpulse dlq
// replay` can publish to again. A stored subject that names no campaign
// of this stream's partitions (any other shape, p >= P, or p not the
// campaign's partition: the stream's transform was changed from outside)
// leaves the campaign empty, so every event of the message is rejected.
// No allocation: the subject and campaign are substrings of stored.
func (in *applier) setSubject(stored string) {
	in.subject, in.campaign = stored, ""
	p := in.ing.opts.Partitions
	if p == 0 {
		return
	}
	// The letters name the subject as published whenever the stored one
	// starts with a partition token, even when the rest is refused below.
	if _, published, ok := partition.Published(in.base, stored); ok {
		in.subject = published
	}
	sp, campaign, ok := partition.FromSubject(in.base, stored)
	if !ok || sp >= p || partition.OfString(p, campaign) != sp {
		return
	}
	in.campaign = campaign
}

// wrongPartition reports whether the valid event ev may not be applied by a
// partitioned consumer: its campaign is not the one its message's subject
// names. The comparison of a []byte converted to a string does not allocate.
func (in *applier) wrongPartition(ev *event.Event) bool {
	return in.ing.opts.Partitions > 0 && string(ev.Dims[windows.DimCampaign]) != in.campaign
}

// rejectWrongPartition rejects the k-th event of its message, valid but of
// another campaign than its subject's, and dead-letters it. The Parser keeps
// no payload of a valid event (the fast path never builds one), so the
// letter's payload (hashed, and kept with Options.DLQRaw) and its known
// fields are both the event as read, re-encoded by event.AppendJSON.
func (in *applier) rejectWrongPartition(ev *event.Event, k int) {
	in.out.rejected[event.WrongPartition]++
	in.known = event.AppendJSON(in.known[:0], ev)
	in.deadLetter(in.known, event.WrongPartition, k)
}

// trimPartition purges the messages of the one partition of
// Options.OnePartition before seq, and returns how many went (the server's
// count: the stream's own figures mix every partition's).
func (j *jsIngest) trimPartition(ctx context.Context, seq uint64) (uint64, error) {
	o := &j.ing.opts
	req, _ := json.Marshal(struct {
		Filter string `json:"filter"`
		Seq    uint64 `json:"seq"`
	}{gapSubject(o), seq})
	// Its own deadline: a JetStream request that finds no leader (a node
	// of the cluster just died) gets no reply at all, and the caller's
	// context may be minutes long.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := j.ing.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+o.Stream, req)
	if err != nil {
		return 0, fmt.Errorf("cannot trim partition %d before sequence %d: %w", o.Partition, seq, err)
	}
	var r struct {
		Success bool   `json:"success"`
		Purged  uint64 `json:"purged"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return 0, fmt.Errorf("cannot trim partition %d: unreadable answer: %w", o.Partition, err)
	}
	if r.Error != nil || !r.Success {
		why := "refused"
		if r.Error != nil {
			why = r.Error.Description
		}
		return 0, fmt.Errorf("cannot trim partition %d before sequence %d: %s", o.Partition, seq, why)
	}
	return r.Purged, nil
}
