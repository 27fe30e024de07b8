package allocbound

import "testing"

var sink []byte

func TestAllocatedSeesAnAllocation(t *testing.T) {
	got := Allocated(func() { sink = make([]byte, 8<<20) })
	if got < 8<<20 {
		t.Fatalf("unexpected allocation; got %d bytes; want at least %d", got, 8<<20)
	}
	if got > 9<<20 {
		t.Fatalf("unexpected allocation; got %d bytes; want about %d", got, 8<<20)
	}
}

func TestCheckFailsPastTheBound(t *testing.T) {
	var ft failTB
	Check(&ft, "a decoder", 10, 1<<20, 16, func() { sink = make([]byte, 4<<20) })
	if !ft.failed {
		t.Fatalf("unexpected pass of 4 MiB allocated against a bound of 1 MiB")
	}
	ft = failTB{}
	Check(&ft, "a decoder", 10, 1<<20, 16, func() { sink = make([]byte, 1<<10) })
	if ft.failed {
		t.Fatalf("unexpected failure of 1 KiB allocated against a bound of 1 MiB")
	}
}

// failTB records a failure instead of ending the test.
type failTB struct {
	testing.TB
	failed bool
}

func (f *failTB) Helper()               {}
func (f *failTB) Fatalf(string, ...any) { f.failed = true }
