package cluster

import (
	"encoding/binary"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Assign gives the owners of each of partitions partitions among members: owners[p] lists the
// min(replicas, members) owners of partition p, primary first. Every instance that calls it with
// the same member names gets the same answer, whatever the order or the duplicates of the names
// it was given, so the members of a cluster agree on the assignment without talking to each
// other: each computes it from the membership view.
//
// The rule is rendezvous (highest random weight) hashing: member m's weight for partition p is
// the xxHash64 (seed 0) of m's bytes followed by p as 4 big-endian bytes, and the owners of p are
// the replicas members of highest weight, in decreasing weight (equal weights, which take a
// 64-bit collision, go by name). A member's weights do not depend on the other members, so:
//   - a member that joins takes, in each partition, the rank its weights give it, and becomes an
//     owner only where that rank is under replicas; the other owners keep their order, and the
//     last of them drops out. Nothing else moves: with replicas 1, the newcomer takes about
//     partitions/(n+1) partitions, each from its previous owner;
//   - a member that leaves gives up only its own places; the owners ranked after it move up one,
//     and the next member by weight joins at the end.
//
// A balanced range split (partition p to member p*n/partitions) would move about half of all
// partitions on every change instead. The price is balance: with 64 partitions a member's share
// varies around partitions/n with a spread of a binomial's (docs/SCALING.md gives the figures).
//
// The hash and the byte layout are part of the cluster's contract: instances that computed the
// weights differently would disagree on owners. testdata/assign_golden.txt pins them.
//
// With replicas < 1 it is taken as 1; with no members every partition has no owner (nil). Assign
// does not keep members or the returned slices; the owner lists share one backing array.
func Assign(partitions uint32, members []string, replicas int) [][]string {
	names := slices.Clone(members)
	slices.Sort(names)
	names = slices.Compact(names)
	owners := make([][]string, partitions)
	if len(names) == 0 {
		return owners
	}
	r := min(max(replicas, 1), len(names))

	type ranked struct {
		weight uint64
		name   string
	}
	all := make([]ranked, len(names))
	flat := make([]string, int(partitions)*r)
	for p := range partitions {
		for i, name := range names {
			all[i] = ranked{weight: Weight(name, p), name: name}
		}
		slices.SortFunc(all, func(a, b ranked) int {
			switch {
			case a.weight > b.weight:
				return -1
			case a.weight < b.weight:
				return 1
			}
			// names are distinct, so this is a strict order: no input order leaks through.
			if a.name < b.name {
				return -1
			}
			return 1
		})
		o := flat[int(p)*r : int(p)*r+r : int(p)*r+r]
		for k := range o {
			o[k] = all[k].name
		}
		owners[p] = o
	}
	return owners
}

// Weight is member's rendezvous weight for partition p, the one rule Assign ranks by: the
// xxHash64 (seed 0) of member's bytes followed by p as 4 big-endian bytes. The partition's fixed
// width keeps the layout unambiguous without a separator. It is exported for tools that explain
// an assignment (which member would take p next).
func Weight(member string, p uint32) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(member)
	var pb [4]byte
	binary.BigEndian.PutUint32(pb[:], p)
	_, _ = d.Write(pb[:])
	return d.Sum64()
}
