package model

import (
	"context"
	"sync/atomic"
)

type requestCounterKey struct{}

// WithRequestCounter returns a context under which the API client counts
// every HTTP attempt it makes (retries included) into n, so that a job can
// record how many requests its run made without knowing the client.
func WithRequestCounter(ctx context.Context, n *atomic.Int64) context.Context {
	return context.WithValue(ctx, requestCounterKey{}, n)
}

// RequestCounter returns the counter set by WithRequestCounter, nil when none.
func RequestCounter(ctx context.Context) *atomic.Int64 {
	n, _ := ctx.Value(requestCounterKey{}).(*atomic.Int64)
	return n
}
