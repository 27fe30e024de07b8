package cowmap

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

func TestAddFlushGet(t *testing.T) {
	m := New[int]()
	mk := func(v int) func() *int { return func() *int { return &v } }
	if added, full := m.TryAdd([]byte("a"), mk(1), 2); added == nil || *added != 1 || full {
		t.Fatalf("TryAdd a: added %v full %v, want added", added, full)
	}
	if m.Get([]byte("a")) != nil {
		t.Fatal("a pending entry is visible before Flush")
	}
	if v := m.Find("a"); v == nil || *v != 1 {
		t.Fatalf("Find of a pending entry returned %v, want 1", v)
	}
	if added, _ := m.TryAdd([]byte("a"), mk(9), 2); added != nil {
		t.Fatal("TryAdd added a pending key twice")
	}
	if v := m.Add([]byte("a"), mk(9), 2); v == nil || *v != 1 {
		t.Fatalf("Add of a pending key returned %v, want its pending value 1", v)
	}
	if v := m.Add([]byte("b"), mk(2), 2); v == nil || *v != 2 {
		t.Fatalf("Add b: %v", v)
	}
	if added, full := m.TryAdd([]byte("c"), mk(3), 2); added != nil || !full {
		t.Fatalf("TryAdd past the limit: added %v full %v, want full", added, full)
	}
	if m.Len() != 2 || m.Pending() != 2 {
		t.Fatalf("Len %d Pending %d, want 2 and 2", m.Len(), m.Pending())
	}
	m.Flush(nil, nil, nil)
	if v := m.Get([]byte("a")); v == nil || *v != 1 {
		t.Fatalf("after Flush, Get a = %v", v)
	}
	if v := m.GetString("b"); v == nil || *v != 2 {
		t.Fatalf("after Flush, GetString b = %v", v)
	}
	if m.Pending() != 0 {
		t.Fatalf("Pending %d after Flush", m.Pending())
	}
	m.Flush(func(k string, _ *int) bool { return k != "a" }, nil, nil)
	if m.Get([]byte("a")) != nil || m.Get([]byte("b")) == nil || m.Len() != 1 {
		t.Fatalf("Flush with keep: a %v b %v len %d", m.Get([]byte("a")), m.Get([]byte("b")), m.Len())
	}
	if prev := m.Set("b", mk(5)()); prev == nil || *prev != 2 {
		t.Fatalf("Set b returned %v, want the previous 2", prev)
	}
	if v := m.Get([]byte("b")); *v != 5 {
		t.Fatalf("Get b after Set = %d", *v)
	}
	if m.Delete([]byte("b")) == nil || m.Get([]byte("b")) != nil || m.Len() != 0 {
		t.Fatal("Delete b did not remove it")
	}
	if m.Delete([]byte("b")) != nil {
		t.Fatal("Delete of a missing key returned a value")
	}
}

// TestConcurrent checks that readers see every published entry with its
// value while writers add, flush, set and drop, and that counts end exact.
func TestConcurrent(t *testing.T) {
	m := New[int]()
	const n = 20_000
	for i := range n / 2 {
		v := i
		m.Set(strconv.Itoa(i), &v)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var key []byte
			for i := 0; !stop.Load(); i = (i + 7) % n {
				key = strconv.AppendInt(key[:0], int64(i), 10)
				if v := m.Get(key); v != nil && *v != i {
					bad.Add(1)
				}
			}
		}()
	}
	// Writers: TryAdd the second half, Flush, drop odd keys.
	var added atomic.Int64
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := n/2 + w; i < n; i += 2 {
				v := i
				for {
					if v, _ := m.TryAdd([]byte(strconv.Itoa(i)), func() *int { return &v }, 0); v != nil {
						added.Add(1)
						break
					}
					if m.Get([]byte(strconv.Itoa(i))) != nil {
						break
					}
					m.Flush(nil, nil, nil)
				}
			}
		}(w)
	}
	for i := 0; i < 50; i++ {
		m.Flush(nil, nil, nil)
	}
	stop.Store(true)
	wg.Wait()
	m.Flush(nil, nil, nil)
	if bad.Load() != 0 {
		t.Fatalf("%d reads saw a wrong value", bad.Load())
	}
	if added.Load() != n/2 || m.Len() != n || m.Pending() != 0 {
		t.Fatalf("added %d, Len %d, Pending %d; want %d, %d, 0", added.Load(), m.Len(), m.Pending(), n/2, n)
	}
	for i := range n {
		if v := m.Get([]byte(strconv.Itoa(i))); v == nil || *v != i {
			t.Fatalf("key %d: %v", i, v)
		}
	}
	m.Flush(func(k string, v *int) bool { return *v%2 == 0 }, nil, nil)
	count := 0
	m.Range(func(k string, v *int) bool {
		if *v%2 != 0 {
			t.Fatalf("odd key %s kept", k)
		}
		count++
		return true
	}, nil)
	if count != n/2 || m.Len() != n/2 {
		t.Fatalf("Range saw %d, Len %d, want %d", count, m.Len(), n/2)
	}
}

func TestGetAllocatesNothing(t *testing.T) {
	m := New[int]()
	v := 1
	m.Set("key-1", &v)
	key := []byte("key-1")
	if a := testing.AllocsPerRun(100, func() { _ = m.Get(key) }); a != 0 {
		t.Fatalf("Get allocates %v times", a)
	}
}

func BenchmarkGet(b *testing.B) {
	m := New[int]()
	keys := make([][]byte, 100_000)
	for i := range keys {
		v := i
		keys[i] = fmt.Appendf(nil, "\x01campaign-%d\x00placement-%d", i%1000, i)
		m.Set(string(keys[i]), &v)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_ = m.Get(keys[i%len(keys)])
			i++
		}
	})
}

func TestFlushAdded(t *testing.T) {
	m := New[int]()
	for i := range 10 {
		v := i
		m.Add([]byte(strconv.Itoa(i)), func() *int { return &v }, 0)
	}
	seen := map[string]int{}
	m.Flush(func(k string, v *int) bool { return *v != 3 }, func(k string, v *int) { seen[k] = *v }, nil)
	if len(seen) != 9 || seen["3"] != 0 || seen["9"] != 9 {
		t.Fatalf("added saw %v, want the 9 kept entries", seen)
	}
	m.Flush(nil, func(string, *int) { t.Fatal("added called with nothing pending") }, nil)
}
