package shm_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/mmap"
	"github.com/ipcgo/ipc/shm"
)

func init() {
	peers["ring-produce"] = peerRingProduce
	peers["ring-pingpong"] = peerRingPingPong
}

// Ring header and record layout, as PROTOCOL.md gives it.
const (
	rhTail     = 128
	rhHead     = 256
	rhClosed   = 24
	recMagicHi = 0xA5C3
)

func recHdr(n uint32, typ, flags uint8) uint64 {
	return uint64(n) | uint64(typ)<<32 | uint64(flags)<<40 | uint64(recMagicHi)<<48
}

// newRing returns a ring of the given capacity in a fresh anonymous
// segment, closed when t ends.
func newRing(t testing.TB, capacity int) (*shm.Segment, *shm.Ring, shm.Region) {
	t.Helper()
	seg, err := shm.CreateAnonymous(shm.RingSize(capacity)+shm.Align, &shm.Config{Perm: 0o600, Slots: 4, Objects: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	r, err := seg.AllocRing("r", capacity)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := seg.Lookup("r")
	if err != nil {
		t.Fatal(err)
	}
	return seg, r, reg
}

// fill writes the deterministic contents of message seq into p.
func fill(p []byte, seq uint64) {
	x := seq*0x9E3779B97F4A7C15 + 1
	for i := range p {
		if i%8 == 0 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
		p[i] = byte(x >> (8 * (i % 8)))
	}
}

// sizeOf is the deterministic size of message seq: mostly small, now and
// then up to limit.
func sizeOf(seq uint64, limit int) int {
	x := seq*0xBF58476D1CE4E5B9 + 7
	x ^= x >> 31
	if x%8 == 0 {
		return int(x>>8) % (limit + 1)
	}
	return int(x>>8) % 130
}

func TestRingBasics(t *testing.T) {
	_, r, _ := newRing(t, 256)
	if r.Capacity() != 256 || r.MaxRecord() != 240 {
		t.Fatalf("capacity %d, max record %d", r.Capacity(), r.MaxRecord())
	}
	if _, err := r.Peek(); err != shm.ErrRingEmpty {
		t.Fatalf("Peek of an empty ring: %v", err)
	}
	if err := r.Release(); err != shm.ErrRingState {
		t.Fatalf("Release without Peek: %v", err)
	}
	if err := r.Commit(1); err != shm.ErrRingState {
		t.Fatalf("Commit without Reserve: %v", err)
	}
	if _, err := r.Reserve(241); err != shm.ErrRecordTooLarge {
		t.Fatalf("Reserve(241): %v", err)
	}
	p, err := r.Reserve(5)
	if err != nil || len(p) != 5 {
		t.Fatalf("Reserve(5) = %d bytes, %v", len(p), err)
	}
	copy(p, "hello")
	if err := r.CommitFlags(5, 0x5a); err != nil {
		t.Fatal(err)
	}
	if r.Len() != 16 {
		t.Fatalf("Len %d after a 5-byte record, want 16", r.Len())
	}
	got, fl, err := r.PeekFlags()
	if err != nil || string(got) != "hello" || fl != 0x5a {
		t.Fatalf("PeekFlags = %q %#x %v", got, fl, err)
	}
	if again, _ := r.Peek(); string(again) != "hello" {
		t.Fatalf("second Peek = %q", again)
	}
	if err := r.Release(); err != nil {
		t.Fatal(err)
	}
	// Commit fewer bytes than reserved; an empty record.
	p, _ = r.Reserve(100)
	copy(p, "abc")
	if err := r.Commit(3); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reserve(0); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(0); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Peek(); string(got) != "abc" {
		t.Fatalf("Peek = %q, want abc", got)
	}
	r.Release()
	if got, err := r.Peek(); err != nil || len(got) != 0 {
		t.Fatalf("empty record: %q %v", got, err)
	}
	r.Release()
	// The producer is at 16+16+8 = 40: a 240-byte record does not fit
	// before the end, so Reserve pads to the end (216 bytes) and starts
	// over at 0, where it needs the pad consumed first.
	if _, err := r.Reserve(240); err != shm.ErrRingFull {
		t.Fatalf("Reserve(240) behind an unread pad: %v", err)
	}
	if r.Len() != 216 {
		t.Fatalf("Len %d with the pad published, want 216", r.Len())
	}
	if _, err := r.Peek(); err != shm.ErrRingEmpty { // skips the pad
		t.Fatalf("Peek of a ring holding a pad: %v", err)
	}
	p, err = r.Reserve(240)
	if err != nil {
		t.Fatalf("Reserve(240) after the pad was read: %v", err)
	}
	fill(p, 1)
	r.Commit(240)
	got, err = r.Peek()
	want := make([]byte, 240)
	fill(want, 1)
	if err != nil || string(got) != string(want) {
		t.Fatalf("record after the pad: %v", err)
	}
	// The ring holds 248 of 256 bytes, and a record needs 8 more than its
	// size: not even an empty record fits.
	if _, err := r.Reserve(0); err != shm.ErrRingFull {
		t.Fatalf("Reserve on a full ring: %v", err)
	}
	r.Release()
	if _, err := r.Peek(); err != shm.ErrRingEmpty {
		t.Fatalf("Peek after draining: %v", err)
	}
	if r.Len() != 0 {
		t.Fatalf("Len %d after draining", r.Len())
	}
}

func TestRingReserveUpTo(t *testing.T) {
	_, r, _ := newRing(t, 256)
	p, err := r.ReserveUpTo(10, 1000)
	if err != nil || len(p) != 240 {
		t.Fatalf("ReserveUpTo(10, 1000) on an empty ring = %d bytes, %v", len(p), err)
	}
	r.Commit(100) // 112 bytes used
	p, err = r.ReserveUpTo(1, 1000)
	if err != nil || len(p) != 256-112-16 {
		t.Fatalf("ReserveUpTo(1, 1000) = %d bytes, %v; want %d", len(p), err, 256-112-16)
	}
	r.Commit(len(p))
	if _, err := r.ReserveUpTo(0, 8); err != shm.ErrRingFull {
		t.Fatalf("ReserveUpTo on a full ring: %v", err)
	}
	if _, err := r.ReserveUpTo(5, 4); err != shm.ErrRecordTooLarge {
		t.Fatalf("ReserveUpTo(5, 4): %v", err)
	}
}

func TestRingClose(t *testing.T) {
	_, r, reg := newRing(t, 256)
	p, _ := r.Reserve(3)
	copy(p, "end")
	r.Commit(3)
	r.CloseWrite()
	if got, err := r.Peek(); err != nil || string(got) != "end" {
		t.Fatalf("record before the close: %q %v", got, err)
	}
	r.Release()
	if _, err := r.Peek(); err != io.EOF {
		t.Fatalf("Peek after CloseWrite and drain: %v, want io.EOF", err)
	}
	if err := r.WaitReadable(context.Background(), &shm.WaitOptions{}); err != nil {
		t.Fatalf("WaitReadable on a closed ring: %v", err)
	}
	// A second view of the same memory sees the consumer's close.
	r2, err := shm.AttachRing(reg.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	r.CloseRead()
	if _, err := r2.Reserve(1); err != io.EOF {
		t.Fatalf("Reserve after CloseRead: %v, want io.EOF", err)
	}
}

func TestRingWaitCancel(t *testing.T) {
	_, r, _ := newRing(t, 256)
	for {
		p, err := r.Reserve(40)
		if err == shm.ErrRingFull {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		r.Commit(len(p))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- r.WaitWritable(ctx, &shm.WaitOptions{Spin: 20 * time.Microsecond, Poll: 5 * time.Second})
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("WaitWritable on a full ring returned %v", err)
	default:
	}
	t0 := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Fatalf("WaitWritable after cancel: %v", err)
		}
		// The cancellation wakes the sleeper: far sooner than Poll.
		if d := time.Since(t0); d > 2*time.Second {
			t.Fatalf("cancel noticed after %v", d)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("WaitWritable ignored the cancellation")
	}

	// A deadline from Stop ends the wait with os.ErrDeadlineExceeded.
	dl := time.Now().Add(30 * time.Millisecond)
	err := r.WaitWritable(context.Background(), &shm.WaitOptions{Stop: func() (time.Time, error) { return dl, nil }})
	if !errors.Is(err, os.ErrDeadlineExceeded) || time.Now().Before(dl) {
		t.Fatalf("WaitWritable with a deadline: %v", err)
	}
	// Stop's error ends the wait.
	stopErr := errors.New("stop")
	if err := r.WaitWritable(context.Background(), &shm.WaitOptions{Stop: func() (time.Time, error) { return time.Time{}, stopErr }}); err != stopErr {
		t.Fatalf("WaitWritable with a failing Stop: %v", err)
	}
	// Freeing space wakes the writer.
	go func() { done <- r.WaitWritable(context.Background(), &shm.WaitOptions{Poll: 5 * time.Second}) }()
	time.Sleep(20 * time.Millisecond)
	t0 = time.Now()
	if _, err := r.Peek(); err != nil {
		t.Fatal(err)
	}
	r.Release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("writer woken %v after the release", time.Since(t0))
	case <-time.After(4 * time.Second):
		t.Fatal("the release did not wake the writer")
	}
}

// TestRingRandomWrap runs a producer and a consumer goroutine over a small
// ring with records of random sizes, so that the indices wrap many times,
// and checks every byte and the checksum of the whole stream.
func TestRingRandomWrap(t *testing.T) {
	for _, spin := range []time.Duration{0, 20 * time.Microsecond} {
		t.Run(fmt.Sprintf("spin=%v", spin), func(t *testing.T) {
			_, r, _ := newRing(t, 1024)
			const n = 20000
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			o := &shm.WaitOptions{Spin: spin}
			var wg sync.WaitGroup
			var sent uint32
			var perr error
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq := uint64(0); seq < n; seq++ {
					sz := sizeOf(seq, r.MaxRecord())
					var p []byte
					var err error
					for {
						if seq%3 == 0 {
							p, err = r.ReserveUpTo(sz, sz)
						} else {
							p, err = r.Reserve(sz)
						}
						if err != shm.ErrRingFull {
							break
						}
						if err = r.WaitWritable(ctx, o); err != nil {
							break
						}
					}
					if err != nil {
						perr = err
						return
					}
					fill(p, seq)
					sent = crc32.Update(sent, crc32.IEEETable, p)
					r.CommitFlags(sz, uint8(seq))
				}
				r.CloseWrite()
			}()
			var got uint32
			want := make([]byte, r.MaxRecord())
			for seq := uint64(0); ; seq++ {
				p, fl, err := r.PeekFlags()
				if err == shm.ErrRingEmpty {
					if err := r.WaitReadable(ctx, o); err != nil {
						t.Fatalf("record %d: %v", seq, err)
					}
					seq--
					continue
				}
				if err == io.EOF {
					if seq != n {
						t.Fatalf("io.EOF after %d records, want %d", seq, n)
					}
					break
				}
				if err != nil {
					t.Fatalf("record %d: %v", seq, err)
				}
				sz := sizeOf(seq, r.MaxRecord())
				fill(want[:sz], seq)
				if len(p) != sz || fl != uint8(seq) || string(p) != string(want[:sz]) {
					t.Fatalf("record %d: %d bytes flags %#x, want %d bytes flags %#x, contents equal %t",
						seq, len(p), fl, sz, uint8(seq), string(p) == string(want[:sz]))
				}
				got = crc32.Update(got, crc32.IEEETable, p)
				r.Release()
			}
			wg.Wait()
			if perr != nil {
				t.Fatal(perr)
			}
			if got != sent {
				t.Fatalf("checksum %#x, producer's %#x", got, sent)
			}
		})
	}
}

// TestRingCrossProcess has a child process produce into a ring of an
// anonymous segment it inherits; the parent checks every record and the
// child's checksum.
func TestRingCrossProcess(t *testing.T) {
	seg, r, _ := newRing(t, 4096)
	const n = 50000
	cmd := ipctest.Command("ring-produce", strconv.Itoa(n))
	cmd.ExtraFiles = []*os.File{seg.File()}
	p := ipctest.Start(t, cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	o := &shm.WaitOptions{Spin: 20 * time.Microsecond}
	var sum uint32
	want := make([]byte, r.MaxRecord())
	for seq := uint64(0); seq < n; {
		rec, err := r.Peek()
		if err == shm.ErrRingEmpty {
			if err := r.WaitReadable(ctx, o); err != nil {
				t.Fatalf("record %d: %v", seq, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("record %d: %v", seq, err)
		}
		sz := sizeOf(seq, r.MaxRecord())
		fill(want[:sz], seq)
		if string(rec) != string(want[:sz]) {
			t.Fatalf("record %d: %d bytes, want %d, contents equal %t", seq, len(rec), sz, string(rec) == string(want[:sz]))
		}
		sum = crc32.Update(sum, crc32.IEEETable, rec)
		r.Release()
		seq++
	}
	if _, err := r.Peek(); err != io.EOF {
		if err == shm.ErrRingEmpty {
			err = r.WaitReadable(ctx, o)
			if err == nil {
				_, err = r.Peek()
			}
		}
		if err != io.EOF {
			t.Fatalf("after the last record: %v, want io.EOF", err)
		}
	}
	p.Expect(t, fmt.Sprintf("sum %d", sum), peerTimeout)
}

// peerRingProduce attaches to the ring "r" of the segment it inherits as
// fd 3, writes args[0] records and prints "sum <crc>".
func peerRingProduce(args []string) int {
	n, _ := strconv.ParseUint(args[0], 10, 64)
	seg, err := shm.OpenFile(os.NewFile(3, "ring-segment"))
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer seg.Close()
	r, err := seg.Ring("r")
	if err != nil {
		return ipctest.Fail("ring: %v", err)
	}
	o := &shm.WaitOptions{Spin: 20 * time.Microsecond}
	var sum uint32
	for seq := uint64(0); seq < n; seq++ {
		sz := sizeOf(seq, r.MaxRecord())
		p, err := r.Reserve(sz)
		for err == shm.ErrRingFull {
			if err = r.WaitWritable(context.Background(), o); err == nil {
				p, err = r.Reserve(sz)
			}
		}
		if err != nil {
			return ipctest.Fail("reserve %d: %v", seq, err)
		}
		fill(p, seq)
		sum = crc32.Update(sum, crc32.IEEETable, p)
		r.Commit(sz)
	}
	r.CloseWrite()
	fmt.Printf("sum %d\n", sum)
	return 0
}

// peerRingPingPong attaches to rings "a" (it reads) and "b" (it writes)
// of the segment it inherits as fd 3 and echoes each record until "a" is
// closed.
func peerRingPingPong(args []string) int {
	seg, err := shm.OpenFile(os.NewFile(3, "ring-segment"))
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer seg.Close()
	in, err := seg.Ring("a")
	if err != nil {
		return ipctest.Fail("ring a: %v", err)
	}
	out, err := seg.Ring("b")
	if err != nil {
		return ipctest.Fail("ring b: %v", err)
	}
	spin, _ := time.ParseDuration(args[0])
	o := &shm.WaitOptions{Spin: spin}
	fmt.Println("ready")
	for {
		rec, err := in.Peek()
		if err == shm.ErrRingEmpty {
			if err := in.WaitReadable(context.Background(), o); err != nil {
				return ipctest.Fail("wait: %v", err)
			}
			continue
		}
		if err == io.EOF {
			return 0
		}
		if err != nil {
			return ipctest.Fail("peek: %v", err)
		}
		p, err := out.Reserve(len(rec))
		for err == shm.ErrRingFull {
			if err = out.WaitWritable(context.Background(), o); err == nil {
				p, err = out.Reserve(len(rec))
			}
		}
		if err != nil {
			return ipctest.Fail("reserve: %v", err)
		}
		copy(p, rec)
		in.Release()
		out.Commit(len(p))
	}
}

func TestAttachRingRejects(t *testing.T) {
	_, _, reg := newRing(t, 256)
	good := append([]byte(nil), reg.Bytes()...)
	cases := []struct {
		name  string
		edit  func(b []byte)
		isErr error
	}{
		{"magic", func(b []byte) { b[0] = 'X' }, shm.ErrRingCorrupt},
		{"version", func(b []byte) { binary.LittleEndian.PutUint32(b[8:], 2) }, shm.ErrVersion},
		{"header size", func(b []byte) { binary.LittleEndian.PutUint32(b[12:], 64) }, shm.ErrRingCorrupt},
		{"capacity not a power of two", func(b []byte) { binary.LittleEndian.PutUint64(b[16:], 255) }, shm.ErrRingCorrupt},
		{"capacity beyond the region", func(b []byte) { binary.LittleEndian.PutUint64(b[16:], 512) }, shm.ErrRingCorrupt},
		{"tail beyond head+capacity", func(b []byte) { binary.LittleEndian.PutUint64(b[rhTail:], 264) }, shm.ErrRingCorrupt},
		{"head far after tail", func(b []byte) { binary.LittleEndian.PutUint64(b[rhHead:], 264) }, shm.ErrRingCorrupt},
		{"misaligned index", func(b []byte) {
			binary.LittleEndian.PutUint64(b[rhTail:], 3)
		}, shm.ErrRingCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := reg.Bytes()
			copy(b, good)
			c.edit(b)
			if _, err := shm.AttachRing(b); !errors.Is(err, c.isErr) {
				t.Fatalf("AttachRing: %v, want %v", err, c.isErr)
			}
		})
	}
	copy(reg.Bytes(), good)
	if _, err := shm.AttachRing(reg.Bytes()[:len(good)-8]); !errors.Is(err, shm.ErrRingCorrupt) {
		t.Fatalf("AttachRing of a truncated ring: %v", err)
	}
	seg, _, _ := newRing(t, 256)
	if _, err := seg.Alloc("data", 64); err != nil {
		t.Fatal(err)
	}
	if _, err := seg.Ring("data"); !errors.Is(err, shm.ErrKindMismatch) {
		t.Fatalf("Ring of a data object: %v", err)
	}
	if _, err := seg.AllocRing("odd", 100); !errors.Is(err, shm.ErrBadConfig) {
		t.Fatalf("AllocRing(100): %v", err)
	}
}

// TestRingCorruptRecords writes bad record headers and indices into the
// ring's memory: the consumer reports ErrRingCorrupt, then keeps doing so.
func TestRingCorruptRecords(t *testing.T) {
	cases := []struct {
		name string
		// write corrupts a ring whose producer index is at 0, and returns
		// the tail to publish.
		write func(data []byte) uint64
	}{
		{"bad magic", func(d []byte) uint64 { binary.LittleEndian.PutUint64(d, 0xdeadbeef); return 16 }},
		{"bad type", func(d []byte) uint64 { binary.LittleEndian.PutUint64(d, recHdr(8, 7, 0)); return 16 }},
		{"record filling the whole ring", func(d []byte) uint64 { binary.LittleEndian.PutUint64(d, recHdr(248, 1, 0)); return 256 }},
		{"tail ahead of an empty header", func(d []byte) uint64 { return 16 }},
		{"length beyond the end", func(d []byte) uint64 { binary.LittleEndian.PutUint64(d, recHdr(1<<31, 1, 0)); return 256 }},
		{"pad short of the end", func(d []byte) uint64 { binary.LittleEndian.PutUint64(d, recHdr(8, 2, 0)); return 16 }},
		{"tail beyond capacity", func(d []byte) uint64 { return 1 << 20 }},
		{"tail far behind", func(d []byte) uint64 { return 1<<64 - 264 }},
		{"tail misaligned", func(d []byte) uint64 { return 12 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, r, reg := newRing(t, 256)
			b := reg.Bytes()
			tail := c.write(b[shm.RingHeaderSize:])
			mmap.Uint64(b, rhTail).Store(tail)
			for i := 0; i < 2; i++ {
				if _, err := r.Peek(); !errors.Is(err, shm.ErrRingCorrupt) {
					t.Fatalf("Peek %d: %v, want ErrRingCorrupt", i, err)
				}
			}
		})
	}
	t.Run("tail moved while the consumer waits", func(t *testing.T) {
		_, r, reg := newRing(t, 256)
		done := make(chan error, 1)
		go func() {
			err := r.WaitReadable(context.Background(), &shm.WaitOptions{Spin: 10 * time.Millisecond, Poll: 20 * time.Millisecond})
			if err == nil {
				_, err = r.Peek()
			}
			done <- err
		}()
		time.Sleep(5 * time.Millisecond)
		mmap.Uint64(reg.Bytes(), rhTail).Store(1 << 20) // no header, a wild index, no wake-up
		select {
		case err := <-done:
			if !errors.Is(err, shm.ErrRingCorrupt) {
				t.Fatalf("Peek after the wait: %v, want ErrRingCorrupt", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the waiting consumer never noticed the corrupt index")
		}
	})
	t.Run("head moved backwards", func(t *testing.T) {
		_, r, reg := newRing(t, 256)
		for i := 0; i < 5; i++ { // fill the ring so the producer must read head
			p, err := r.Reserve(40)
			if err != nil {
				break
			}
			r.Commit(len(p))
		}
		mmap.Uint64(reg.Bytes(), rhHead).Store(1 << 40)
		if _, err := r.Reserve(40); !errors.Is(err, shm.ErrRingCorrupt) {
			t.Fatalf("Reserve: %v, want ErrRingCorrupt", err)
		}
	})
}

// FuzzRing feeds arbitrary ring headers, indices and records to a consumer
// (and a producer): whatever the bytes, no call panics or reads outside the
// ring, and errors are the documented ones.
func FuzzRing(f *testing.F) {
	seed := func(recs ...uint64) []byte {
		b := make([]byte, 0, 8*len(recs))
		for _, r := range recs {
			b = binary.LittleEndian.AppendUint64(b, r)
		}
		return b
	}
	f.Add(uint16(0), []byte{}, uint64(0), uint64(16), seed(recHdr(5, 1, 0), 0), []byte{0, 0, 1})
	f.Add(uint16(0), []byte{}, uint64(240), uint64(272), seed(recHdr(8, 1, 1), 0), []byte{0, 1, 2, 3})
	f.Add(uint16(1), []byte("IPCGRING\x01\x00\x00\x00\x80\x02\x00\x00"), uint64(0), uint64(256), seed(recHdr(240, 2, 0)), []byte{0, 0})
	f.Add(uint16(2), []byte("XXXX"), uint64(8), uint64(0), []byte{}, []byte{})
	f.Add(uint16(0), []byte{}, uint64(1<<63), uint64(1<<63+8), seed(recHdr(0, 1, 0)), []byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, mode uint16, hdr []byte, head, tail uint64, data, ops []byte) {
		const capacity = 256
		buf := alignedBuf(shm.RingSize(capacity))
		if err := shm.InitRing(buf); err != nil {
			t.Fatal(err)
		}
		if mode&1 != 0 {
			copy(buf[:64], hdr) // the fixed line: magic, version, capacity, closed
		}
		binary.LittleEndian.PutUint64(buf[rhHead:], head)
		binary.LittleEndian.PutUint64(buf[rhTail:], tail)
		if mode&2 != 0 {
			buf[rhClosed] = byte(mode >> 8)
		}
		copy(buf[shm.RingHeaderSize:], data)
		r, err := shm.AttachRing(buf)
		if err != nil {
			if !errors.Is(err, shm.ErrRingCorrupt) && !errors.Is(err, shm.ErrVersion) {
				t.Fatalf("AttachRing: unexpected error %v", err)
			}
			return
		}
		corrupt := false
		for i, op := range ops {
			if i > 64 {
				break
			}
			switch op % 4 {
			case 0, 1:
				p, _, err := r.PeekFlags()
				switch {
				case err == nil:
					if corrupt {
						t.Fatal("a record after ErrRingCorrupt")
					}
					if len(p) > capacity {
						t.Fatalf("a %d-byte record in a %d-byte ring", len(p), capacity)
					}
					_ = append([]byte(nil), p...) // read it all
					if op%4 == 1 {
						if err := r.Release(); err != nil {
							t.Fatalf("Release after Peek: %v", err)
						}
					}
				case errors.Is(err, shm.ErrRingCorrupt):
					corrupt = true
				case err == shm.ErrRingEmpty, err == io.EOF:
				default:
					t.Fatalf("Peek: unexpected error %v", err)
				}
			case 2:
				p, err := r.ReserveUpTo(int(op>>2), int(op))
				switch {
				case err == nil:
					fill(p, uint64(op))
					if err := r.Commit(len(p)); err != nil {
						t.Fatalf("Commit after Reserve: %v", err)
					}
				case errors.Is(err, shm.ErrRingCorrupt), err == shm.ErrRingFull, err == io.EOF:
				default:
					t.Fatalf("Reserve: unexpected error %v", err)
				}
			case 3:
				_ = r.Len()
			}
		}
	})
}

// alignedBuf returns n zero bytes starting at a 64-byte boundary.
func alignedBuf(n int) []byte {
	b := make([]byte, n+64)
	for off := 0; ; off++ {
		if mmap.Aligned(b[off:], 64) {
			return b[off : off+n : off+n]
		}
	}
}

// TestRingPeerDiesMidStream: a producer killed while the consumer waits
// leaves the ring consistent; what it published is readable.
func TestRingPeerKilled(t *testing.T) {
	seg, r, _ := newRing(t, 4096)
	cmd := ipctest.Command("ring-produce", "1000000000")
	cmd.ExtraFiles = []*os.File{seg.File()}
	p := ipctest.Start(t, cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := &shm.WaitOptions{Spin: 20 * time.Microsecond}
	want := make([]byte, r.MaxRecord())
	for seq := uint64(0); seq < 1000; {
		rec, err := r.Peek()
		if err == shm.ErrRingEmpty {
			if err := r.WaitReadable(ctx, o); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sz := sizeOf(seq, r.MaxRecord())
		fill(want[:sz], seq)
		if string(rec) != string(want[:sz]) {
			t.Fatalf("record %d differs", seq)
		}
		r.Release()
		seq++
	}
	p.Kill()
	<-p.Done()
	// Everything published is intact; then the ring is just empty.
	for seq := uint64(1000); ; seq++ {
		rec, err := r.Peek()
		if err == shm.ErrRingEmpty {
			break
		}
		if err != nil {
			t.Fatalf("record %d after the kill: %v", seq, err)
		}
		sz := sizeOf(seq, r.MaxRecord())
		fill(want[:sz], seq)
		if string(rec) != string(want[:sz]) {
			t.Fatalf("record %d after the kill differs", seq)
		}
		r.Release()
	}
}
