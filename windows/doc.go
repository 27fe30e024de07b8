// Package windows holds bidpulse's sliding-window counters: per key, a few
// event-time ring buffers (by default 12 x 5 s, 60 x 1 min and 24 x 1 h) of
// impressions, clicks, conversions, cost and value, read back as the spans 1m,
// 5m, 15m, 1h and 24h.
//
// A key is a rollup level plus its dimension values (see Rollups, AppendKey).
// Every method takes the current time as an argument in Unix milliseconds; the
// package never reads the process clock, so tests and replays drive time.
//
// The state is pointer-free (fixed-size bucket slabs, a map[uint64]uint32 index
// and a byte arena per shard), so the garbage collector has nothing to scan in
// it, and it is split into padded shards, each guarded by its own lock.
package windows
