// Package jsensure binds to a JetStream asset (a stream, a KV bucket, an
// object store) that many processes may be creating at once.
//
// On a JetStream cluster, when several clients create the same stream at
// once, one creation wins and the others' requests may get no reply at all:
// they wait out their whole deadline (seen with nats-server v2.15 and three
// clients creating one R3 KV bucket: the winner answered in 28ms, the two
// others timed out, and a look-up right after found the bucket). A request
// sent before a cluster has a meta leader waits the same way. So each
// attempt here has a short deadline of its own, and the look-up comes first.
package jsensure

import (
	"context"
	"time"
)

// Attempt bounds one look-up or one creation.
const Attempt = 2 * time.Second

// Bind returns what lookup finds, else what create makes, retrying both
// with a short deadline each until ctx ends. notFound tells a look-up that
// found nothing (create next) from one that failed (retry).
func Bind[T any](ctx context.Context, lookup, create func(ctx context.Context) (T, error), notFound func(error) bool) (T, error) {
	var zero T
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		v, err := attempt(ctx, lookup)
		if err == nil {
			return v, nil
		}
		if notFound(err) {
			if v, err = attempt(ctx, create); err == nil {
				return v, nil
			}
		}
		select {
		case <-ctx.Done():
			return zero, err
		case <-time.After(wait):
		}
	}
}

func attempt[T any](ctx context.Context, fn func(ctx context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, Attempt)
	defer cancel()
	return fn(ctx)
}
