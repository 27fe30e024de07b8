// Package windows holds bidpulse's sliding-window counters: per key, a few
// event-time ring buffers (by default 12 x 5 s, 15 x 1 min, 12 x 5 min and
// 24 x 1 h) of impressions, clicks, conversions, cost and value, read back as
// the spans 1m, 5m, 15m, 1h and 24h.
//
// A key is a rollup level plus its dimension values (see Rollups, AppendKey).
// Every method takes the current time as an argument in Unix milliseconds; the
// package never reads the process clock, so tests and replays drive time.
//
// The state holds no Go pointer per key: fixed-size blocks in slabs (off the
// Go heap on Linux, on transparent huge pages), an open-addressing index and
// a key arena per shard, so the garbage collector has nothing to scan in it.
// It is split into 64 padded shards, each with a seqlock: writers exclude
// each other per shard, readers take no lock and retry when a write
// overlapped theirs (see Store). A key starts in a small sparse block and
// moves to a dense one when its events spread over more buckets; dense blocks
// keep a running total per span, so a read touches a few cache lines.
//
// Checkpoints (WriteCheckpoint, ReadCheckpoint) save and restore every key in
// a versioned binary format independent of that layout. AddBatch applies many
// events with their cache misses overlapped.
package windows
