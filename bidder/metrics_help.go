package bidder

import (
	"bytes"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// metricsScrape holds one GET /metrics: the series as the metrics package
// writes them (Write), then as they are served (described). Take one with
// getMetricsScrape and give it back with putMetricsScrape once the bytes of
// described are copied; the pool keeps both buffers between scrapes. A
// metricsScrape is used by one goroutine at a time.
type metricsScrape struct {
	raw bytes.Buffer
	out []byte
}

var metricsScrapePool = sync.Pool{New: func() any { return &metricsScrape{} }}

var exposeMetadataOnce sync.Once

// getMetricsScrape returns an empty metricsScrape from the pool. The first
// call turns on the metrics package's HELP and TYPE lines, a process-global
// switch: every metrics.Set and WriteProcessMetrics of the process writes
// them from then on (cmd/bidpulse turns it on too). It is turned on at the
// first scrape, not at import, so a program that imports bidder without
// serving /metrics keeps its own output as it was.
func getMetricsScrape() *metricsScrape {
	exposeMetadataOnce.Do(func() { metrics.ExposeMetadata(true) })
	sc := metricsScrapePool.Get().(*metricsScrape)
	sc.raw.Reset()
	return sc
}

func putMetricsScrape(sc *metricsScrape) { metricsScrapePool.Put(sc) }

// Write appends p to the scrape; it never fails.
func (sc *metricsScrape) Write(p []byte) (int, error) { return sc.raw.Write(p) }

// described returns the scrape with the text of every family's HELP line
// (appendMetricsHelp). The bytes are the scrape's own: valid until it is
// put back.
func (sc *metricsScrape) described() []byte {
	sc.out = appendMetricsHelp(sc.out[:0], sc.raw.Bytes())
	return sc.out
}

var (
	helpPrefix   = []byte("# HELP ")
	nlHelpPrefix = []byte("\n# HELP ")
	typePrefix   = []byte("# TYPE ")
	unknownType  = []byte("series")
)

// appendMetricsHelp appends src, Prometheus text, to dst with every
// "# HELP family" line that has no text given its text from metricHelp,
// escaped. A family without an entry gets a fallback text naming where it
// comes from and its type (TestMetricsHelp fails for it). A HELP line that
// already has a text is kept as is. One pass over src; it allocates nothing
// once dst has room.
func appendMetricsHelp(dst, src []byte) []byte {
	for len(src) > 0 {
		if !bytes.HasPrefix(src, helpPrefix) {
			i := bytes.Index(src, nlHelpPrefix)
			if i < 0 {
				return append(dst, src...)
			}
			dst = append(dst, src[:i+1]...)
			src = src[i+1:]
		}
		n := bytes.IndexByte(src, '\n')
		if n < 0 {
			n = len(src)
		}
		line, family := src[:n], src[len(helpPrefix):n]
		// src keeps the line's newline, copied with the next span.
		src = src[n:]
		dst = append(dst, line...)
		if len(family) == 0 || bytes.IndexByte(family, ' ') >= 0 {
			continue
		}
		dst = append(dst, ' ')
		if text, ok := metricHelp[string(family)]; ok {
			dst = appendHelpText(dst, text)
		} else {
			dst = appendFallbackHelp(dst, family, nextMetricType(src, family))
		}
	}
	return dst
}

// appendHelpText appends s escaped as the text of a HELP line: a backslash
// as \\ and a newline as \n (the Prometheus text format).
func appendHelpText(dst []byte, s string) []byte {
	for {
		i := strings.IndexAny(s, "\\\n")
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		if s[i] == '\\' {
			dst = append(dst, `\\`...)
		} else {
			dst = append(dst, `\n`...)
		}
		s = s[i+1:]
	}
}

// nextMetricType returns the type of the "# TYPE family type" line that
// opens rest (after its newline), or "series" when there is none.
func nextMetricType(rest, family []byte) []byte {
	if len(rest) > 0 && rest[0] == '\n' {
		rest = rest[1:]
	}
	if !bytes.HasPrefix(rest, typePrefix) || !bytes.HasPrefix(rest[len(typePrefix):], family) {
		return unknownType
	}
	rest = rest[len(typePrefix)+len(family):]
	if len(rest) < 2 || rest[0] != ' ' {
		return unknownType
	}
	rest = rest[1:]
	if n := bytes.IndexByte(rest, '\n'); n >= 0 {
		rest = rest[:n]
	}
	return rest
}

// appendFallbackHelp appends the text of a family missing from metricHelp:
// where it comes from, its type, and that it is not described yet.
func appendFallbackHelp(dst, family, typ []byte) []byte {
	switch {
	case bytes.HasPrefix(family, []byte("bidpulse_")):
		dst = append(dst, "bidpulse "...)
	case bytes.HasPrefix(family, []byte("go_")):
		dst = append(dst, "Go runtime "...)
	case bytes.HasPrefix(family, []byte("process_")):
		dst = append(dst, "Process "...)
	}
	dst = append(dst, typ...)
	return append(dst, " (not described yet: no entry in bidder/metrics_help.go)."...)
}

// metricHelp is the HELP text of every metric family GET /metrics writes:
// the service's (registered in metrics.go, service.go, sse.go, ingest and
// brain; docs/OPERATIONS.md lists them) and VictoriaMetrics/metrics'
// WriteProcessMetrics ones (go_metrics.go and process_metrics_linux.go of
// v1.45.0). A family that only shows on some hosts (cgroup v2 pressure, CPU
// quota) has its entry too. TestMetricsHelp fails for a family without one
// and for a bidpulse_ entry no service writes.
var metricHelp = map[string]string{
	// Bid answers and HTTP.
	"bidpulse_bid_duration_seconds": "Time to answer a bid request (over HTTP or NATS), in seconds, from the start of its handling to its answer ready: " +
		`route="multiplier" is GET /v1/multiplier, route="multipliers" the batch POST /v1/multipliers, route="openrtb" POST /v1/openrtb/multipliers. Buckets 5us..100ms.`,
	"bidpulse_openrtb_tmax_expired_total": "OpenRTB requests (POST /v1/openrtb/multipliers) answered past their own deadline (tmax after ext.bidpulse.auction_start, else after arrival): " +
		"their remaining impressions got the neutral 1, marked \"neutral\":\"tmax\".",
	"bidpulse_openrtb_fields_dropped_total": "Impression keys of OpenRTB requests left without a dimension they named, by field and reason: placement or site too_long " +
		"(over the 128 bytes an event field holds, so no data can exist), country unknown_code (not an ISO 3166-1 alpha-3 or alpha-2 code), " +
		"device unknown_type (devicetype outside AdCOM 1..8 and no user agent).",
	"bidpulse_natsbids_requests_total": "Bid requests answered over NATS request-reply (service bidpulse, natsbids.go), by endpoint: " +
		`endpoint="multiplier" is bidpulse.v1.multiplier, "multipliers" bidpulse.v1.multipliers, "openrtb" bidpulse.v1.openrtb. Their latency is in bidpulse_bid_duration_seconds with HTTP's.`,
	"bidpulse_natsbids_errors_total": "Bid requests over NATS answered with an error (a micro error whose code is the HTTP status, 4xx or 5xx), by endpoint.",
	"bidpulse_natsbids_dropped_total": "Bid requests over NATS left unanswered, by reason: no_reply (published without a reply subject), " +
		"stopping (arrived while the service stopped), respond_failed (the answer could not be published).",
	"bidpulse_http_requests_total": "HTTP requests answered, by route (dashboard and snapshot_stream included; " +
		"other: any other path, and requests that could not be parsed) and status code.",
	"bidpulse_http_connections":                "Open HTTP connections.",
	"bidpulse_http_connections_max":            "The cap on open HTTP connections (--http-max-conns; 0: none).",
	"bidpulse_http_connections_per_ip_max":     "The cap on open HTTP connections per client address, an IPv6 /64 as one (--http-max-conns-per-ip; 0: none).",
	"bidpulse_http_connections_accepted_total": "HTTP connections accepted within the caps.",
	"bidpulse_http_connections_refused_total": "HTTP connections refused on arrival, by reason: max_conns (the total cap, answered 503) " +
		"or per_ip (the cap per client address, answered 429).",
	"bidpulse_http_requests_refused_total": "HTTP requests refused before any handler, by reason: transfer_encoding (411 or 400), " +
		"line_ending (a bare LF), obs_fold, bad_header, duplicate_header (Content-Length, Authorization), protocol (not HTTP/1.x), " +
		"body_not_allowed, body_too_large, headers_too_large, timeout (not received within --http-read-timeout), unparsable.",

	// Ingest.
	"bidpulse_ingest_messages_total":        "NATS messages of events taken in (a batch of events is one message).",
	"bidpulse_ingest_events_received_total": "Events received (an unparsable payload counts as one); the sum of bidpulse_ingest_events_total over its outcomes.",
	"bidpulse_ingest_events_total": "Events received, by outcome: counted, duplicate (its (type, id) already seen), " +
		"late (older than the longest window), future (more than 5s ahead of the service clock), overflow (a new key past --max-keys) " +
		"or rejected (invalid, with the first failed check as reason; wrong_partition: valid, but with --partitions of another campaign than its subject's).",
	"bidpulse_ingest_events_counted_total": "Events counted into the windows, by type (impression, click, conversion).",
	"bidpulse_ingest_lag_seconds":          "Service clock minus the time of the newest applied event, in seconds (0 before the first event).",
	"bidpulse_ingest_stalls_total": "JetStream mode: stalls, no message applied for --stall-after while the stream held messages " +
		"past the last applied one (each answered by re-creating the consumer).",
	"bidpulse_buffer_fill_ratio": "Spike buffer fill, 0..1: in JetStream mode the event stream's bytes over --stream-max-bytes " +
		"(0 without a limit); in core mode the larger of the subscription's pending messages and bytes over --pending-msgs and --pending-bytes.",
	"bidpulse_replay_progress_ratio": "Catch-up after a start, 0..1: the share of the stream messages up to the stream's last one at start " +
		"that are applied (JetStream mode; 1 once caught up, and always in core mode).",
	"bidpulse_windows_saturated_adds": "Window writes that met a bucket counter at its maximum, which then holds the maximum " +
		"instead of the true sum (cumulative, written as a gauge).",

	// Core NATS subscription.
	"bidpulse_nats_connected":        "1 while the service's NATS connection is connected, else 0.",
	"bidpulse_nats_pending_messages": "Core mode: event messages the NATS subscription received and the service has not applied yet.",
	"bidpulse_nats_pending_bytes":    "Core mode: bytes of the event messages the NATS subscription received and the service has not applied yet.",
	"bidpulse_nats_dropped_messages": "Core mode: event messages lost to a slow consumer, dropped by the NATS client past the subscription's " +
		"pending limits plus those the embedded server dropped for the service's connection (cumulative, written as a gauge).",
	"bidpulse_nats_server_refused_total": "Embedded NATS server: what it refused its clients, by reason: publish or subscribe outside the user's " +
		"permissions, authentication failed, TLS handshake failed. Logged at most once per 10 s per reason.",

	// JetStream.
	"bidpulse_jetstream_applied_seq":         "JetStream mode: stream sequence of the last applied message (0 in core mode or before the first).",
	"bidpulse_jetstream_consumer_pending":    "JetStream mode: stream messages the service's consumer has not applied yet, as of the last refresh (every second).",
	"bidpulse_jetstream_stream_bytes":        "JetStream mode: bytes the event stream holds, as of the last refresh (every second).",
	"bidpulse_jetstream_stream_max_bytes":    "The event stream's size limit, in bytes (--stream-max-bytes; -1: no limit).",
	"bidpulse_jetstream_lost_messages_total": "JetStream mode: messages the stream no longer held when they were due (trimmed, purged or deleted before being applied).",
	"bidpulse_jetstream_delivery_gaps_total": "JetStream mode: sequence gaps whose messages the stream still held (deliveries dropped on the way), " +
		"each answered by re-creating the consumer.",
	"bidpulse_jetstream_consumer_recreated_total": "JetStream mode: times the consumer was re-created after the last applied message " +
		"(a delivery gap, a consumer deleted or replaced from outside, a stall).",
	"bidpulse_jetstream_redelivered_skipped_total":     "JetStream mode: redeliveries of messages already applied, skipped.",
	"bidpulse_jetstream_stream_trims_total":            "JetStream mode: purges of the event stream up to the oldest checkpoint kept in NATS.",
	"bidpulse_jetstream_stream_trimmed_messages_total": "JetStream mode: messages removed from the event stream by those purges.",

	// Dead letters.
	"bidpulse_dlq_stored_total": "Dead letters (rejected payloads) stored by the BIDPULSE_DLQ stream (core mode: published).",
	"bidpulse_dlq_publish_errors_total": "Failed attempts to store a dead letter (each retry counts; the letter stays queued); " +
		"core mode: also the letters still queued at stop, lost.",
	"bidpulse_dlq_pending": "Dead letters queued, not stored yet.",

	// Windows and operator state.
	"bidpulse_keys":               "Live keys in the windows, over all rollups.",
	"bidpulse_keys_max":           "The cap on live keys over all rollups (--max-keys); events needing a key past it are counted as overflow.",
	"bidpulse_keys_evicted_total": "Idle keys evicted from the windows.",
	"bidpulse_overrides":          "Operator overrides held (PUT /v1/overrides); an expired one leaves at the next eviction pass.",
	"bidpulse_killswitch_enabled": "1 while the kill switch is on (every bid answered 1), else 0.",
	"bidpulse_control_rejected_records_total": "Control records read from the KV bucket bidpulse_control and ignored because they break the admin API's rules, by kind " +
		"(override, policy, killswitch; key: a key naming no record). Each is logged (throttled).",
	"bidpulse_control_audit_dropped_total": "Audit entries not published to the BIDPULSE_AUDIT stream because the audit queue was full (the KV watch never waits on the stream); " +
		"each is still in the service log and audit.log.",
	"bidpulse_control_unsigned_records_total": "Control records applied from the KV bucket without a valid signature of the control key: written outside the admin API " +
		"(nats kv put), or by an instance with another key. Their author is recorded as nats-kv and they are audited.",
	"bidpulse_ready": "1 while GET /readyz answers 200 (started, not stopping and, in JetStream mode, consuming, caught up and not stalled), else 0.",

	// Checkpoints.
	"bidpulse_checkpoint_age_seconds": "JetStream mode: age of the last checkpoint written or loaded, in seconds (0: none).",
	"bidpulse_checkpoint_size_bytes":  "JetStream mode: size of the last checkpoint file written, in bytes (its dedup snapshot file apart).",
	"bidpulse_checkpoint_pause_seconds": "JetStream mode: how long ingest waited for the last checkpoint to begin, in seconds " +
		"(microsecond resolution; /v1/stats checkpoint.pause_ms).",
	"bidpulse_checkpoint_duration_seconds":   "JetStream mode: duration of the last checkpoint, in seconds (millisecond resolution).",
	"bidpulse_checkpoints_written_total":     "Local checkpoints written.",
	"bidpulse_checkpoint_write_errors_total": "Local checkpoints that could not be written.",
	"bidpulse_checkpoint_load_errors_total": "Checkpoints ignored on load (local or kept in NATS): corrupt, truncated, another format version, " +
		"another stream, other resolutions or rollups.",
	"bidpulse_checkpoints_uploaded_total": "Checkpoints kept in NATS (bucket bidpulse_checkpoints).",
	"bidpulse_checkpoint_upload_errors_total": "Failures to keep a checkpoint in NATS, record it or trim the stream after it " +
		"(the stream then keeps more; nothing is lost).",
	"bidpulse_checkpoint_controller_errors_total": "Controller states left out of a checkpoint because JSON cannot carry them " +
		"(NaN, infinities); they start afresh after a restart.",

	// Controllers (brain).
	"bidpulse_brain_key_states":      "Answering keys with guardrail state.",
	"bidpulse_brain_key_states_max":  "The cap on answering keys with guardrail state (--max-key-states).",
	"bidpulse_brain_campaigns":       "Campaigns tracked (answered or with learned conversion delays).",
	"bidpulse_brain_campaign_states": "Campaigns with controller state (goal, pacing, delay model).",
	"bidpulse_brain_campaigns_max":   "The cap on tracked campaigns (--max-campaign-states).",
	"bidpulse_brain_untracked_total": "Keys (table=\"keys\") or campaigns (table=\"campaigns\") that could not be tracked because " +
		"their table was full: answers given without their state, and for campaigns also conversion delays not learned.",
	"bidpulse_brain_restore_invalid_total": "Key (table=\"keys\") or campaign (table=\"campaigns\") controller states of a " +
		"checkpoint left out at load because a field was out of the range the control tick keeps it in (a corrupt or edited " +
		"checkpoint): they start afresh.",
	"bidpulse_brain_ticks_total":  "Control ticks run (one per control interval).",
	"bidpulse_brain_tick_seconds": "Duration of the last control tick, in seconds (millisecond resolution).",

	// Dashboard streams.
	"bidpulse_sse_streams":                  "Open dashboard streams (GET /v1/snapshot/stream).",
	"bidpulse_sse_streams_max":              "The cap on open dashboard streams (--sse-max-streams).",
	"bidpulse_sse_streams_refused_total":    "Dashboard streams refused because the cap was reached.",
	"bidpulse_sse_snapshots_computed_total": "Snapshots computed for dashboard streams (one per distinct query per tick, and the first frame of a new query).",
	"bidpulse_sse_ticks_total":              "Dashboard stream ticks (one per --sse-interval, streams open or not).",

	// Snapshot scans.
	"bidpulse_snapshot_scans_total":        "Scans of a level's keys for /v1/snapshot and its stream (at most one per level and window at a time, shared about a second).",
	"bidpulse_snapshot_scanned_keys_total": "Keys visited by the snapshot scans (and by their multiplier pass, for the multiplier sort).",
	"bidpulse_snapshot_scans_shared_total": "Snapshot answers and stream frames served by a scan already made or in flight, instead of a new one.",
	"bidpulse_snapshot_scans_refused_total": "Snapshot scans refused because the scans spent their budget (--snapshot-scan-rate): " +
		"a 503 for GET /v1/snapshot, the last scan again for a stream.",
	"bidpulse_snapshot_scan_rate_max": "The budget of the snapshot scans, in keys visited per second (--snapshot-scan-rate; 0: none).",

	// Go runtime (runtime/metrics).
	"go_sched_latencies_seconds": "Time goroutines spent runnable, waiting for a thread, before running, in seconds " +
		"(runtime/metrics /sched/latencies; buckets up to 1s, longer waits only in +Inf; no _sum or _count).",
	"go_mutex_wait_seconds_total": "Approximate cumulative time goroutines spent blocked on a sync.Mutex, a sync.RWMutex " +
		"or a runtime-internal lock, in seconds (/sync/mutex/wait/total).",
	"go_gc_mark_assist_cpu_seconds_total": "Estimated CPU time goroutines spent on GC mark assists, in seconds (/cpu/classes/gc/mark/assist).",
	"go_gc_cpu_seconds_total":             "Estimated CPU time spent on garbage collection, in seconds (/cpu/classes/gc/total).",
	"go_gc_pauses_seconds": "Stop-the-world pauses of the garbage collector, in seconds (runtime/metrics /gc/pauses; " +
		"buckets up to 1s, longer pauses only in +Inf; no _sum or _count).",
	"go_scavenge_cpu_seconds_total": "Estimated CPU time spent returning unused memory to the OS, in seconds (/cpu/classes/scavenge/total).",
	"go_memlimit_bytes":             "The Go runtime's soft memory limit, in bytes (GOMEMLIMIT; math.MaxInt64 when unset).",

	// Go runtime (runtime.MemStats).
	"go_memstats_alloc_bytes":          "Bytes of allocated heap objects (MemStats.Alloc).",
	"go_memstats_alloc_bytes_total":    "Cumulative bytes allocated for heap objects (MemStats.TotalAlloc).",
	"go_memstats_buck_hash_sys_bytes":  "Bytes of memory in profiling bucket hash tables (MemStats.BuckHashSys).",
	"go_memstats_frees_total":          "Cumulative count of heap objects freed (MemStats.Frees).",
	"go_memstats_gc_cpu_fraction":      "Fraction, 0..1, of the CPU time available to the program used by the GC since the program started (MemStats.GCCPUFraction).",
	"go_memstats_gc_sys_bytes":         "Bytes of memory in garbage collection metadata (MemStats.GCSys).",
	"go_memstats_heap_alloc_bytes":     "Bytes of allocated heap objects, reachable or not yet freed (MemStats.HeapAlloc).",
	"go_memstats_heap_idle_bytes":      "Bytes in idle (unused) heap spans (MemStats.HeapIdle).",
	"go_memstats_heap_inuse_bytes":     "Bytes in in-use heap spans (MemStats.HeapInuse).",
	"go_memstats_heap_objects":         "Number of allocated heap objects (MemStats.HeapObjects).",
	"go_memstats_heap_released_bytes":  "Bytes of physical heap memory returned to the OS (MemStats.HeapReleased).",
	"go_memstats_heap_sys_bytes":       "Bytes of heap memory obtained from the OS (MemStats.HeapSys).",
	"go_memstats_last_gc_time_seconds": "Unix time, in seconds, at which the last garbage collection finished (0: none yet).",
	"go_memstats_lookups_total":        "Pointer lookups performed by the runtime (MemStats.Lookups).",
	"go_memstats_mallocs_total":        "Cumulative count of heap objects allocated (MemStats.Mallocs).",
	"go_memstats_mcache_inuse_bytes":   "Bytes of allocated mcache structures (MemStats.MCacheInuse).",
	"go_memstats_mcache_sys_bytes":     "Bytes of memory obtained from the OS for mcache structures (MemStats.MCacheSys).",
	"go_memstats_mspan_inuse_bytes":    "Bytes of allocated mspan structures (MemStats.MSpanInuse).",
	"go_memstats_mspan_sys_bytes":      "Bytes of memory obtained from the OS for mspan structures (MemStats.MSpanSys).",
	"go_memstats_next_gc_bytes":        "Heap size, in bytes, at which the next garbage collection is due (MemStats.NextGC).",
	"go_memstats_other_sys_bytes":      "Bytes of miscellaneous off-heap runtime allocations (MemStats.OtherSys).",
	"go_memstats_stack_inuse_bytes":    "Bytes in goroutine stack spans (MemStats.StackInuse).",
	"go_memstats_stack_sys_bytes":      "Bytes of stack memory obtained from the OS, OS thread stacks included (MemStats.StackSys).",
	"go_memstats_sys_bytes": "Total bytes of memory obtained from the OS by the Go runtime (MemStats.Sys); " +
		"memory the service maps itself, off the Go heap, is not in it.",
	"go_gc_duration_seconds": "Stop-the-world GC pause durations, in seconds: quantiles over the last 256 pauses " +
		"(MemStats.PauseNs, zeros included before 256 cycles); _sum is the total pause time and _count the GC cycles since start.",
	"go_gc_forced_count": "Garbage collections forced by the program calling runtime.GC (MemStats.NumForcedGC).",

	// Go runtime (other).
	"go_cgo_calls_count": "Cgo calls made by the process (runtime.NumCgoCall).",
	"go_cpu_count":       "Logical CPUs usable by the process (runtime.NumCPU).",
	"go_gomaxprocs":      "Most OS threads that can run Go code at once (GOMAXPROCS).",
	"go_goroutines":      "Goroutines that currently exist.",
	"go_threads":         "OS threads the Go runtime has created.",
	"go_info":            "Always 1; the version label is the Go version that built the binary.",
	"go_info_ext":        "Always 1; the labels are the compiler, GOARCH, GOOS and GOROOT of the build.",

	// Process (/proc/self/stat, /proc/self/status, /proc/self/io).
	"process_cpu_seconds_system_total":   "CPU time the process spent in kernel mode, in seconds (10ms resolution).",
	"process_cpu_seconds_total":          "CPU time the process spent in user and kernel mode, in seconds (10ms resolution).",
	"process_cpu_seconds_user_total":     "CPU time the process spent in user mode, in seconds (10ms resolution).",
	"process_major_pagefaults_total":     "Page faults that needed a page read from disk.",
	"process_minor_pagefaults_total":     "Page faults served without reading from disk.",
	"process_num_threads":                "OS threads in the process.",
	"process_resident_memory_bytes":      "Resident set size: bytes of the process's memory in RAM.",
	"process_start_time_seconds":         "Unix time, in seconds, at which the process started (when the metrics package was initialised).",
	"process_virtual_memory_bytes":       "Virtual memory size of the process, in bytes.",
	"process_virtual_memory_peak_bytes":  "Peak virtual memory size of the process, in bytes (VmPeak).",
	"process_resident_memory_peak_bytes": "Peak resident set size of the process, in bytes (VmHWM).",
	"process_resident_memory_anon_bytes": "Resident anonymous memory, in bytes (RssAnon): the Go heap and stacks, and the windows' slabs " +
		"mapped off the Go heap.",
	"process_resident_memory_file_bytes":   "Resident file-backed memory, in bytes (RssFile): the binary and mapped files.",
	"process_resident_memory_shared_bytes": "Resident shared memory, in bytes (RssShmem): shared anonymous mappings, tmpfs and System V shared memory.",
	"process_io_read_bytes_total": "Bytes the process read with read-like system calls, from the page cache, sockets and pipes included " +
		"(rchar; cumulative, typed gauge).",
	"process_io_written_bytes_total": "Bytes the process wrote with write-like system calls, to sockets and pipes included " +
		"(wchar; cumulative, typed gauge).",
	"process_io_read_syscalls_total":         "Read-like system calls made by the process (syscr; cumulative, typed gauge).",
	"process_io_write_syscalls_total":        "Write-like system calls made by the process (syscw; cumulative, typed gauge).",
	"process_io_storage_read_bytes_total":    "Bytes the process caused to be fetched from storage (read_bytes; cumulative, typed gauge).",
	"process_io_storage_written_bytes_total": "Bytes the process caused to be sent to storage (write_bytes; cumulative, typed gauge).",

	// Process cgroup (v2 pressure stall information, CPU quota), counted from
	// the process's start; written only where the cgroup files exist.
	"process_pressure_cpu_waiting_seconds_total": "Time at least one task of the process's cgroup waited for CPU, in seconds, " +
		"since the process started (PSI cpu some).",
	"process_pressure_cpu_stalled_seconds_total": "Time all non-idle tasks of the process's cgroup waited for CPU at once, in seconds, " +
		"since the process started (PSI cpu full).",
	"process_pressure_io_waiting_seconds_total": "Time at least one task of the process's cgroup waited for I/O, in seconds, " +
		"since the process started (PSI io some).",
	"process_pressure_io_stalled_seconds_total": "Time all non-idle tasks of the process's cgroup waited for I/O at once, in seconds, " +
		"since the process started (PSI io full).",
	"process_pressure_memory_waiting_seconds_total": "Time at least one task of the process's cgroup waited for memory, in seconds, " +
		"since the process started (PSI memory some).",
	"process_pressure_memory_stalled_seconds_total": "Time all non-idle tasks of the process's cgroup waited for memory at once, in seconds, " +
		"since the process started (PSI memory full).",
	"process_cgroup_cpu_throttled_seconds_total": "Time the process's cgroup was throttled by its CPU quota, in seconds, " +
		"since the process started (cpu.stat).",
}
