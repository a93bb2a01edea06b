// Package fanout runs one function over many items with bounded
// parallelism: the one primitive every multi-host loop of booted uses, so
// that BOOTED_PARALLEL bounds them all.
package fanout

import (
	"context"
	"sync"
)

// DefaultParallel is the bound when none is given.
const DefaultParallel = 64

// Each calls fn(ctx, i) for i in 0..n-1, at most parallel at once (zero or
// less means DefaultParallel), and waits for them all. Items not started
// when ctx ends are not run: skipped(i) is called for each instead (if
// set). It returns ctx's error if ctx ended before every item started.
func Each(ctx context.Context, n, parallel int, fn func(ctx context.Context, i int), skipped func(i int)) error {
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var err error
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			err = ctx.Err()
			if skipped != nil {
				skipped(i)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(ctx, i)
		}()
	}
	wg.Wait()
	return err
}

// Map calls fn for each item (as Each) and returns the results in order.
func Map[T, R any](ctx context.Context, items []T, parallel int, fn func(ctx context.Context, item T) R) []R {
	out := make([]R, len(items))
	Each(ctx, len(items), parallel, func(ctx context.Context, i int) { out[i] = fn(ctx, items[i]) }, nil)
	return out
}
