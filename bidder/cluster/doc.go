// Package cluster is the groundwork of scale-out's membership and assignment: which bidpulse
// instances are alive, and which of them own each campaign partition. It has no cluster
// protocol of its own: NATS keeps the leases and tells every member about every change, and
// each member computes the assignment from what it was told.
//
// Membership. Each instance holds a lease in a JetStream KV bucket (Bucket): its key is its
// instance name, its value a small JSON record (Member). The lease is the bucket's TTL, renewed
// by rewriting the key every TTL/3; a key that is not rewritten expires, and the server writes a
// limit marker in its place, which every watch sees as a purge. Join registers an instance and
// follows the bucket with a KV watch, so Members answers from memory; Leave deletes the key at
// once on a graceful stop. A crashed instance is seen gone when its lease expires: between 2/3
// of a TTL and a TTL (plus up to 250 ms of the server's expiry timer) after the crash.
//
// Assignment. Assign maps partitions to members by rendezvous hashing: deterministic from the
// member names alone, and moving only the partitions of the member that joined or left.
//
// Nothing in the service uses this package yet (docs/SCALING.md, "Membership and assignment").
package cluster
