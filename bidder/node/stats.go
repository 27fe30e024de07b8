package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/bidpulse/bidpulse/bidder"
)

// nodeStats are the member's counters (its units have their own).
type nodeStats struct {
	local          *metrics.Counter
	forwarded      [numEndpoints]*metrics.Counter
	neutral        [numNeutral]*metrics.Counter
	forwardLatency *metrics.Histogram
	handoversIn    *metrics.Counter
	handoversOut   *metrics.Counter
	replicasIn     *metrics.Counter
	replicasOut    *metrics.Counter
	unitErrors     *metrics.Counter
}

func (s *nodeStats) init(n *Node) {
	ms := n.metrics
	s.local = ms.NewCounter(`bidpulse_cluster_bids_total{where="local"}`)
	for i, name := range epNames {
		s.forwarded[i] = ms.NewCounter(`bidpulse_cluster_forwarded_total{endpoint="` + name + `"}`)
	}
	for i, name := range neutralNames {
		s.neutral[i] = ms.NewCounter(`bidpulse_cluster_neutral_answers_total{reason="` + name + `"}`)
	}
	s.forwardLatency = ms.NewHistogram(`bidpulse_cluster_forward_seconds`)
	s.handoversIn = ms.NewCounter(`bidpulse_cluster_handovers_total{direction="in"}`)
	s.handoversOut = ms.NewCounter(`bidpulse_cluster_handovers_total{direction="out"}`)
	s.replicasIn = ms.NewCounter(`bidpulse_cluster_replicas_total{direction="in"}`)
	s.replicasOut = ms.NewCounter(`bidpulse_cluster_replicas_total{direction="out"}`)
	s.unitErrors = ms.NewCounter(`bidpulse_cluster_unit_start_errors_total`)
	ms.NewGauge(`bidpulse_cluster_members`, func() float64 {
		if v := n.view.Load(); v != nil {
			return float64(len(v.members))
		}
		return 0
	})
	ms.NewGauge(`bidpulse_cluster_partitions`, func() float64 { return float64(n.parts) })
	ms.NewGauge(`bidpulse_cluster_owned_partitions`, func() float64 { return float64(len(n.owned())) })
	ms.NewGauge(`bidpulse_cluster_serving_partitions`, func() float64 {
		k := 0
		for _, u := range *n.serving.Load() {
			if u != nil {
				k++
			}
		}
		return float64(k)
	})
	ms.NewGauge(`bidpulse_ready`, func() float64 {
		if ok, _ := n.isReady(); ok {
			return 1
		}
		return 0
	})
}

// owned returns the partitions the last assignment gives this member.
func (n *Node) owned() []uint32 {
	v := n.view.Load()
	if v == nil {
		return nil
	}
	var out []uint32
	for p, owners := range v.owners {
		if slices.Contains(owners, n.opts.Member) {
			out = append(out, uint32(p))
		}
	}
	return out
}

// unitReport is one unit in /v1/stats.
type unitReport struct {
	Partition uint32 `json:"partition"`
	// Role is "primary" or "replica".
	Role     string `json:"role"`
	State    string `json:"state"`
	Consumer string `json:"consumer"`
	// TookMs is how long the unit took from its start to serving.
	TookMs int64 `json:"took_ms,omitempty"`
	bidder.UnitState
}

// units returns the units' reports, by partition.
func (n *Node) unitReports() []unitReport {
	n.mu.Lock()
	units := make([]*unit, 0, len(n.units))
	for _, u := range n.units {
		units = append(units, u)
	}
	n.mu.Unlock()
	slices.SortFunc(units, func(a, b *unit) int {
		if a.p != b.p {
			return int(a.p) - int(b.p)
		}
		return b2i(a.replica) - b2i(b.replica)
	})
	out := make([]unitReport, 0, len(units))
	for _, u := range units {
		role := "primary"
		if u.replica {
			role = "replica"
		}
		r := unitReport{Partition: u.p, Role: role, State: stateNames[u.state.Load()], Consumer: u.ingestConsumer(), TookMs: u.servingMs.Load()}
		if svc := u.svc.Load(); svc != nil {
			r.UnitState = svc.UnitState()
		}
		out = append(out, r)
	}
	return out
}

// serveStats answers GET /v1/stats: the member, its units and its bid
// routing counters.
func (n *Node) serveStats(ctx *fasthttp.RequestCtx) {
	units := n.unitReports()
	var counted, keys uint64
	for _, u := range units {
		// A replica counts its primary's events again: not summed.
		if u.Role == "primary" {
			counted += u.Counted
			keys += uint64(u.Keys)
		}
	}
	fw := map[string]uint64{}
	for i, name := range epNames {
		fw[name] = n.stats.forwarded[i].Get()
	}
	neutral := map[string]uint64{}
	for i, name := range neutralNames {
		neutral[name] = n.stats.neutral[i].Get()
	}
	ready, why := n.isReady()
	body, _ := json.Marshal(map[string]any{
		"member":     n.opts.Member,
		"ready":      ready,
		"not_ready":  why,
		"partitions": n.parts,
		"owned":      n.owned(),
		"units":      units,
		"counted":    counted,
		"keys":       keys,
		"bids": map[string]any{
			"local": n.stats.local.Get(), "forwarded": fw, "neutral": neutral,
		},
		"handovers": map[string]uint64{"in": n.stats.handoversIn.Get(), "out": n.stats.handoversOut.Get()},
		"replicas":  map[string]uint64{"in": n.stats.replicasIn.Get(), "out": n.stats.replicasOut.Get()},
	})
	writeJSON(ctx, fasthttp.StatusOK, body)
}

// serveCluster answers GET /v1/cluster: the members, the assignment, and
// what this member serves.
func (n *Node) serveCluster(ctx *fasthttp.RequestCtx) {
	v := n.view.Load()
	type memberReport struct {
		Instance   string    `json:"instance"`
		Addr       string    `json:"addr"`
		Started    time.Time `json:"started"`
		Partitions []uint32  `json:"partitions"`
	}
	out := struct {
		Member     string         `json:"member"`
		Partitions uint32         `json:"partitions"`
		Replicas   int            `json:"replicas"`
		Members    []memberReport `json:"members"`
		// Owners are the partitions' primaries; Replicas their other
		// owners, per partition.
		Owners     []string   `json:"owners"`
		ReplicasOf [][]string `json:"replicas_of"`
		Serving    []uint32   `json:"serving"`
		ComputedAt time.Time  `json:"computed_at"`
	}{Member: n.opts.Member, Partitions: n.parts, Replicas: n.opts.Replicas, Members: []memberReport{}, Owners: []string{},
		ReplicasOf: [][]string{}, Serving: []uint32{}}
	if v != nil {
		out.ComputedAt = v.at.UTC()
		for _, m := range v.members {
			mr := memberReport{Instance: m.Instance, Addr: m.Addr, Started: m.Started, Partitions: []uint32{}}
			for p, owners := range v.owners {
				if slices.Contains(owners, m.Instance) {
					mr.Partitions = append(mr.Partitions, uint32(p))
				}
			}
			out.Members = append(out.Members, mr)
		}
		for _, owners := range v.owners {
			if len(owners) > 0 {
				out.Owners = append(out.Owners, owners[0])
				out.ReplicasOf = append(out.ReplicasOf, append([]string{}, owners[1:]...))
			} else {
				out.Owners = append(out.Owners, "")
				out.ReplicasOf = append(out.ReplicasOf, []string{})
			}
		}
	}
	for p, u := range *n.serving.Load() {
		if u != nil {
			out.Serving = append(out.Serving, uint32(p))
		}
	}
	body, _ := json.Marshal(out)
	writeJSON(ctx, fasthttp.StatusOK, body)
}

// serveMetrics answers GET /metrics: the member's series, then per unit its
// partition's applied sequence, pending messages, lag, keys and counted
// events.
func (n *Node) serveMetrics(ctx *fasthttp.RequestCtx) {
	var b bytes.Buffer
	n.metrics.WritePrometheus(&b)
	n.auth.WriteFrontMetrics(&b)
	units := n.unitReports()
	series := []struct {
		name, help string
		get        func(u *unitReport) float64
	}{
		{"bidpulse_partition_applied_seq", "the stream sequence of the partition's last applied message", func(u *unitReport) float64 { return float64(u.AppliedSeq) }},
		{"bidpulse_partition_pending_messages", "the partition's messages not yet delivered to its consumer", func(u *unitReport) float64 { return float64(u.Pending) }},
		{"bidpulse_partition_lag_seconds", "now minus the newest applied event's time", func(u *unitReport) float64 { return u.LagSeconds }},
		{"bidpulse_partition_keys", "the partition's live keys", func(u *unitReport) float64 { return float64(u.Keys) }},
		{"bidpulse_partition_counted_events", "the events the partition's unit counted (restored with its checkpoint)", func(u *unitReport) float64 { return float64(u.Counted) }},
		{"bidpulse_partition_serving", "1 when this member answers the partition's bids", func(u *unitReport) float64 {
			if u.State == "serving" {
				return 1
			}
			return 0
		}},
	}
	for _, s := range series {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", s.name, s.help, s.name)
		for i := range units {
			fmt.Fprintf(&b, "%s{partition=\"%d\",role=\"%s\"} %g\n", s.name, units[i].Partition, units[i].Role, s.get(&units[i]))
		}
	}
	fmt.Fprintf(&b, "# HELP bidpulse_partition_controllers_lag_seconds a replica's lag behind its primary's controller states: publication to adoption, the last one\n# TYPE bidpulse_partition_controllers_lag_seconds gauge\n")
	for i := range units {
		if units[i].Role == "replica" {
			fmt.Fprintf(&b, "bidpulse_partition_controllers_lag_seconds{partition=\"%d\"} %g\n", units[i].Partition, float64(units[i].Replication.ControllersLagMs)/1e3)
		}
	}
	ctx.Response.Header.SetContentType("text/plain; version=0.0.4")
	ctx.SetBody(b.Bytes())
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
