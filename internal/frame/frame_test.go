package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"testing/iotest"

	"github.com/ipcgo/ipc/internal/ipcerr"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Len: 0}, {Len: 1}, {Len: 8192, More: true}, {Len: 1<<32 - 1}, {Len: 1<<32 - 1, More: true},
	} {
		var b [HeaderSize]byte
		for i := range b {
			b[i] = 0xFF // Put must set every byte
		}
		h.Put(b[:])
		if b[0] != Magic || b[1] != Version || b[3] != 0 {
			t.Fatalf("%+v encoded as % x", h, b)
		}
		got, err := Parse(b[:], 1<<32-1)
		if err != nil || got != h {
			t.Fatalf("Parse(Put(%+v)) = %+v, %v", h, got, err)
		}
	}
	// The layout is the documented one.
	var b [HeaderSize]byte
	Header{Len: 0x01020304, More: true}.Put(b[:])
	if want := []byte{0xC1, 1, 1, 0, 4, 3, 2, 1}; !bytes.Equal(b[:], want) {
		t.Fatalf("encoded % x, want % x", b, want)
	}
}

// TestParseCorrupt covers every way a header can be wrong.
func TestParseCorrupt(t *testing.T) {
	good := func() []byte {
		b := make([]byte, HeaderSize)
		Header{Len: 10}.Put(b)
		return b
	}
	cases := []struct {
		name  string
		patch func(b []byte) []byte
		max   int
		want  error
	}{
		{"short", func(b []byte) []byte { return b[:HeaderSize-1] }, 100, ipcerr.ErrCorruptFrame},
		{"empty", func(b []byte) []byte { return nil }, 100, ipcerr.ErrCorruptFrame},
		{"magic", func(b []byte) []byte { b[0] = 0xC2; return b }, 100, ipcerr.ErrCorruptFrame},
		{"magic-zero", func(b []byte) []byte { b[0] = 0; return b }, 100, ipcerr.ErrCorruptFrame},
		{"version-0", func(b []byte) []byte { b[1] = 0; return b }, 100, ipcerr.ErrCorruptFrame},
		{"version-2", func(b []byte) []byte { b[1] = 2; return b }, 100, ipcerr.ErrCorruptFrame},
		{"flags", func(b []byte) []byte { b[2] = 2; return b }, 100, ipcerr.ErrCorruptFrame},
		{"flags-more-and-other", func(b []byte) []byte { b[2] = 0x81; return b }, 100, ipcerr.ErrCorruptFrame},
		{"reserved", func(b []byte) []byte { b[3] = 1; return b }, 100, ipcerr.ErrCorruptFrame},
		{"length-over-max", func(b []byte) []byte { return b }, 9, ipcerr.ErrMessageTooLarge},
		{"length-huge", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[4:], 0xFFFFFFFF); return b }, 1 << 30, ipcerr.ErrMessageTooLarge},
		{"max-zero", func(b []byte) []byte { return b }, 0, ipcerr.ErrMessageTooLarge},
		{"max-negative", func(b []byte) []byte { return b }, -1, ipcerr.ErrMessageTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := Parse(c.patch(good()), c.max)
			if !errors.Is(err, c.want) {
				t.Fatalf("Parse: %+v, %v; want %v", h, err, c.want)
			}
			if h != (Header{}) {
				t.Fatalf("Parse returned header %+v with its error", h)
			}
		})
	}
	// Exactly max is fine.
	if h, err := Parse(good(), 10); err != nil || h.Len != 10 {
		t.Fatalf("length == max: %+v, %v", h, err)
	}
}

func TestCheckSize(t *testing.T) {
	if err := CheckSize(10, 10); err != nil {
		t.Fatal(err)
	}
	if err := CheckSize(0, 0); err != nil {
		t.Fatal(err)
	}
	if err := CheckSize(11, 10); !errors.Is(err, ipcerr.ErrMessageTooLarge) {
		t.Fatalf("CheckSize(11, 10) = %v", err)
	}
}

// encode returns the frames of msgs: each message split into frames of at
// most split payload bytes (0: one frame), the way a packet transport
// sends a message larger than a packet.
func encode(msgs [][]byte, split int) []byte {
	var out []byte
	for _, m := range msgs {
		for {
			n := len(m)
			if split > 0 && n > split {
				n = split
			}
			var h [HeaderSize]byte
			Header{Len: n, More: n < len(m)}.Put(h[:])
			out = append(append(out, h[:]...), m[:n]...)
			m = m[n:]
			if len(m) == 0 {
				break
			}
		}
	}
	return out
}

func randomMsgs(r *rand.Rand, n, maxLen int) [][]byte {
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = make([]byte, r.IntN(maxLen+1))
		for j := range msgs[i] {
			msgs[i][j] = byte(r.Uint32())
		}
	}
	return msgs
}

// readAll reads messages until an error and returns them with the error.
func readAll(rd *Reader) ([][]byte, error) {
	var out [][]byte
	var buf []byte
	for {
		m, err := rd.Read(buf)
		if err != nil {
			return out, err
		}
		out = append(out, bytes.Clone(m))
		buf = m
	}
}

func equalMsgs(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("message %d: got %d bytes, want %d", i, len(got[i]), len(want[i]))
		}
	}
}

// TestReaderChunked reads the same stream through readers that return one
// byte at a time, at most a few bytes, data with io.EOF, and everything at
// once: the messages are the same.
func TestReaderChunked(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	msgs := randomMsgs(r, 200, 3000)
	msgs = append(msgs, nil, make([]byte, 100<<10), []byte{}) // empty, larger than the buffer, empty at the end
	for _, split := range []int{0, 1, 700} {
		stream := encode(msgs, split)
		readers := map[string]func() io.Reader{
			"whole":     func() io.Reader { return bytes.NewReader(stream) },
			"one-byte":  func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
			"half":      func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
			"data-err":  func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) },
			"one-b-err": func() io.Reader { return iotest.DataErrReader(iotest.OneByteReader(bytes.NewReader(stream))) },
		}
		for name, mk := range readers {
			if split == 1 && name == "one-byte" {
				continue // slow and adds nothing to one-byte frames through "whole"
			}
			got, err := readAll(NewReader(mk(), 1<<20))
			if err != io.EOF {
				t.Fatalf("split %d, %s: ended with %v, want io.EOF", split, name, err)
			}
			equalMsgs(t, got, msgs)
		}
	}
}

// TestReaderMore checks messages made of several frames, and that the size
// limit applies to the whole message, not to each frame.
func TestReaderMore(t *testing.T) {
	msg := bytes.Repeat([]byte("abcdefghij"), 100) // 1000 bytes
	stream := encode([][]byte{msg, []byte("x")}, 300)
	got, err := readAll(NewReader(bytes.NewReader(stream), 1000))
	if err != io.EOF {
		t.Fatal(err)
	}
	equalMsgs(t, got, [][]byte{msg, []byte("x")})

	// 4 frames of 300+300+300+100 bytes against a limit of 999: the last
	// frame pushes the message over.
	rd := NewReader(bytes.NewReader(stream), 999)
	m, err := rd.Read(nil)
	if !errors.Is(err, ipcerr.ErrMessageTooLarge) {
		t.Fatalf("multi-frame message over the limit: %d bytes, %v", len(m), err)
	}
	if len(m) > 999 {
		t.Fatalf("returned %d bytes with the error, above the limit", len(m))
	}
	// The error sticks: the stream is lost.
	if _, err2 := rd.Read(nil); !errors.Is(err2, ipcerr.ErrMessageTooLarge) || rd.Err() == nil {
		t.Fatalf("after a too-large message: %v, Err %v", err2, rd.Err())
	}

	// Zero-length frames with More are allowed and add nothing.
	var s []byte
	for _, h := range []Header{{Len: 0, More: true}, {Len: 2, More: true}, {Len: 0, More: true}, {Len: 1}} {
		var b [HeaderSize]byte
		h.Put(b[:])
		s = append(s, b[:]...)
		s = append(s, "xyz"[:h.Len]...)
	}
	if m, err := NewReader(bytes.NewReader(s), 3).Read(nil); err != nil || string(m) != "xyx" {
		t.Fatalf("frames with empty parts: %q, %v", m, err)
	}
}

// TestReaderCorrupt: every corruption class is a sticky typed error, and
// what precedes it is delivered first.
func TestReaderCorrupt(t *testing.T) {
	good := encode([][]byte{[]byte("first")}, 0)
	bad := func(patch func(h []byte)) []byte {
		b := encode([][]byte{[]byte("second")}, 0)
		patch(b[:HeaderSize])
		return append(append([]byte{}, good...), b...)
	}
	cases := map[string]struct {
		stream []byte
		want   error
	}{
		"magic":   {bad(func(h []byte) { h[0] = 'G' }), ipcerr.ErrCorruptFrame},
		"version": {bad(func(h []byte) { h[1] = 7 }), ipcerr.ErrCorruptFrame},
		"flags":   {bad(func(h []byte) { h[2] = 4 }), ipcerr.ErrCorruptFrame},
		"zero":    {bad(func(h []byte) { h[3] = 9 }), ipcerr.ErrCorruptFrame},
		"huge":    {bad(func(h []byte) { binary.LittleEndian.PutUint32(h[4:], 0xFFFFFFFF) }), ipcerr.ErrMessageTooLarge},
		"text":    {append(append([]byte{}, good...), "HTTP/1.1 400 Bad Request\r\n"...), ipcerr.ErrCorruptFrame},
		// A frame with More, then a corrupt continuation frame.
		"continuation": {append(append(append([]byte{}, good...), encode([][]byte{[]byte("0123456789")}, 4)[:HeaderSize+4]...), "junkjunk"...), ipcerr.ErrCorruptFrame},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			for _, oneByte := range []bool{false, true} {
				var src io.Reader = bytes.NewReader(c.stream)
				if oneByte {
					src = iotest.OneByteReader(src)
				}
				rd := NewReader(src, 1<<20)
				if m, err := rd.Read(nil); err != nil || string(m) != "first" {
					t.Fatalf("first message: %q, %v", m, err)
				}
				_, err := rd.Read(nil)
				if !errors.Is(err, c.want) {
					t.Fatalf("corrupt frame: %v, want %v", err, c.want)
				}
				if _, err2 := rd.Read(nil); err2 != err || rd.Err() != err {
					t.Fatalf("not sticky: then %v, Err %v", err2, rd.Err())
				}
			}
		})
	}
}

// TestReaderTruncated: a stream that ends between messages is io.EOF; one
// that ends inside a header or payload is io.ErrUnexpectedEOF.
func TestReaderTruncated(t *testing.T) {
	stream := encode([][]byte{[]byte("hello"), []byte("world, longer")}, 0)
	first := HeaderSize + 5
	for cut := 0; cut <= len(stream); cut++ {
		rd := NewReader(iotest.OneByteReader(bytes.NewReader(stream[:cut])), 100)
		got, err := readAll(rd)
		want := io.ErrUnexpectedEOF
		if cut == 0 || cut == first || cut == len(stream) {
			want = io.EOF
		}
		if err != want {
			t.Fatalf("cut at %d: %v, want %v", cut, err, want)
		}
		if n := len(got); (cut >= first) != (n >= 1) || (n == 2) != (cut == len(stream)) {
			t.Fatalf("cut at %d: %d messages", cut, n)
		}
	}
	// A multi-frame message cut between its frames.
	multi := encode([][]byte{[]byte("0123456789")}, 4)
	if _, err := NewReader(bytes.NewReader(multi[:HeaderSize+4]), 100).Read(nil); err != io.ErrUnexpectedEOF {
		t.Fatalf("message cut after a More frame: %v", err)
	}
}

// TestReaderResume: an error of the underlying reader (a deadline) at any
// point, inside a header, a payload or between the frames of a message,
// leaves the Reader usable: the next Read resumes where it stopped and the
// messages come out whole. The caller reusing its buffer after the error
// does not matter.
func TestReaderResume(t *testing.T) {
	msgs := [][]byte{[]byte("one"), nil, bytes.Repeat([]byte("0123456789"), 30), []byte("last")}
	for _, split := range []int{0, 7} {
		for _, bufCap := range []int{0, 8, 1000} { // messages in the Reader's memory or in the caller's
			stream := encode(msgs, split)
			// A timeout before every byte of the stream.
			errAt := map[int]error{}
			for i := range len(stream) {
				errAt[i] = os.ErrDeadlineExceeded
			}
			src := &scripted{data: stream, errAt: errAt}
			rd := NewReader(iotest.OneByteReader(src), 1000)
			var got [][]byte
			buf := make([]byte, 0, bufCap)
			timeouts := 0
			for {
				m, err := rd.Read(buf)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					timeouts++
					if rd.Err() != nil {
						t.Fatalf("a timeout became sticky: %v", rd.Err())
					}
					// The caller scribbles over its buffer and what it got.
					for _, b := range [][]byte{buf[:cap(buf)], m[:cap(m)]} {
						for i := range b {
							b[i] = 'X'
						}
					}
					continue
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("split %d: %v", split, err)
				}
				got = append(got, bytes.Clone(m))
				if cap(m) > cap(buf) {
					buf = m[:0]
				}
			}
			equalMsgs(t, got, msgs)
			if timeouts != len(stream) {
				t.Fatalf("split %d: %d timeouts, want %d", split, timeouts, len(stream))
			}
		}
	}
	// The end of the stream inside a message is final, after a timeout too.
	stream := encode([][]byte{[]byte("0123456789")}, 4)
	src := &scripted{data: stream[:HeaderSize+6], errAt: map[int]error{HeaderSize + 2: os.ErrDeadlineExceeded}}
	rd := NewReader(iotest.OneByteReader(src), 100)
	if _, err := rd.Read(nil); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("want the timeout, got %v", err)
	}
	if _, err := rd.Read(nil); err != io.ErrUnexpectedEOF {
		t.Fatalf("end inside a resumed message: %v", err)
	}
	if _, err := rd.Read(nil); err != io.ErrUnexpectedEOF {
		t.Fatalf("not sticky: %v", err)
	}
}

// TestReaderBufferReuse: Read appends to buf[:0] and reuses its capacity.
func TestReaderBufferReuse(t *testing.T) {
	stream := encode([][]byte{[]byte("abc"), []byte("de")}, 0)
	rd := NewReader(bytes.NewReader(stream), 100)
	buf := make([]byte, 10, 64)
	m, err := rd.Read(buf)
	if err != nil || string(m) != "abc" || &m[0] != &buf[:1][0] {
		t.Fatalf("first: %q %v, reused %t", m, err, err == nil && &m[0] == &buf[:1][0])
	}
	m, err = rd.Read(m)
	if err != nil || string(m) != "de" || &m[0] != &buf[:1][0] {
		t.Fatalf("second: %q %v", m, err)
	}
}

// scripted serves data and returns errAt[i] once when reading position i.
type scripted struct {
	data  []byte
	pos   int
	errAt map[int]error
}

func (s *scripted) Read(p []byte) (int, error) {
	if err, ok := s.errAt[s.pos]; ok {
		delete(s.errAt, s.pos)
		return 0, err
	}
	if s.pos == len(s.data) {
		return 0, io.EOF
	}
	n := copy(p, s.data[s.pos:])
	s.pos += n
	return n, nil
}

// FuzzReader feeds arbitrary bytes to a Reader: it never panics, never
// returns a message above its limit, and always ends with an error. The
// fuzzer's input also seeds random messages that, encoded, must decode back
// exactly, whether sent in one frame or split.
func FuzzReader(f *testing.F) {
	one := encode([][]byte{[]byte("hello")}, 0)
	multi := encode([][]byte{[]byte("hello, world"), nil, []byte("x")}, 5)
	huge := append([]byte(nil), one...)
	binary.LittleEndian.PutUint32(huge[4:], 0xFFFFFFF0)
	badMagic := append([]byte(nil), one...)
	badMagic[0] = 0
	f.Add(one, uint16(64))
	f.Add(multi, uint16(64))
	f.Add(one[:len(one)-2], uint16(64))     // truncated payload
	f.Add(one[:3], uint16(64))              // truncated header
	f.Add(multi[:HeaderSize+5], uint16(64)) // truncated between frames
	f.Add(badMagic, uint16(64))             // bad magic
	f.Add(huge, uint16(64))                 // huge length
	f.Add(one, uint16(4))                   // over the limit
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint16(1000))
	f.Add([]byte{}, uint16(0))
	f.Fuzz(fuzzReader)
}

func fuzzReader(t *testing.T, data []byte, limit16 uint16) {
	limit := int(limit16)
	rd := NewReader(iotest.HalfReader(bytes.NewReader(data)), limit)
	total := 0
	for i := 0; ; i++ {
		m, err := rd.Read(nil)
		if len(m) > limit {
			t.Fatalf("message of %d bytes, limit %d", len(m), limit)
		}
		if err != nil {
			if err != io.EOF && err != io.ErrUnexpectedEOF &&
				!errors.Is(err, ipcerr.ErrCorruptFrame) && !errors.Is(err, ipcerr.ErrMessageTooLarge) {
				t.Fatalf("unexpected error %v", err)
			}
			break
		}
		total += HeaderSize + len(m)
		if total > len(data) || i > len(data)/HeaderSize {
			t.Fatalf("decoded more than the input holds")
		}
	}

	// Round trip of messages derived from data.
	r := rand.New(rand.NewPCG(uint64(len(data)), uint64(limit)))
	var msgs [][]byte
	for rest := data; len(rest) > 0; {
		n := min(len(rest), r.IntN(300))
		msgs = append(msgs, rest[:n])
		rest = rest[n:]
	}
	split := r.IntN(64)
	stream := encode(msgs, split)
	// The underlying reader also times out now and then: the Reader resumes.
	flaky := &flakyReader{r: iotest.HalfReader(bytes.NewReader(stream)), every: 2 + r.IntN(5)}
	rt := NewReader(flaky, 300)
	var got [][]byte
	buf := make([]byte, 0, r.IntN(400))
	for {
		m, err := rt.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			for i := range buf[:cap(buf)] {
				buf[:cap(buf)][i] = 0xEE
			}
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("round trip (split %d): %v", split, err)
		}
		got = append(got, bytes.Clone(m))
	}
	if len(got) != len(msgs) {
		t.Fatalf("round trip: %d messages, want %d", len(got), len(msgs))
	}
	for i := range got {
		if !bytes.Equal(got[i], msgs[i]) {
			t.Fatalf("round trip: message %d differs", i)
		}
	}
}

// flakyReader fails every every-th Read with a timeout.
type flakyReader struct {
	r     io.Reader
	every int
	n     int
}

func (f *flakyReader) Read(p []byte) (int, error) {
	if f.n++; f.n%f.every == 0 {
		return 0, os.ErrDeadlineExceeded
	}
	return f.r.Read(p)
}

// asks records the length of each Read's buffer.
type asks struct {
	r    io.Reader
	lens []int
}

func (a *asks) Read(p []byte) (int, error) {
	a.lens = append(a.lens, len(p))
	return a.r.Read(p)
}

// TestReaderAsksForAboutOneFrame checks that a read asks for about the size
// of the last frame (a whole buffer before the first), so that a reader of
// small messages takes them one at a time, and that the messages are right
// whatever the sizes do.
func TestReaderAsksForAboutOneFrame(t *testing.T) {
	msgs := [][]byte{make([]byte, 100), make([]byte, 100), make([]byte, 10), make([]byte, 5000), make([]byte, 3)}
	for i, m := range msgs {
		for j := range m {
			m[j] = byte(i + j)
		}
	}
	a := &asks{r: bytes.NewReader(encode(msgs, 0))}
	got, err := readAll(NewReader(a, 1<<20))
	if err != io.EOF {
		t.Fatalf("ended with %v, want io.EOF", err)
	}
	equalMsgs(t, got, msgs)
	if a.lens[0] != 64<<10 {
		t.Errorf("first read asked for %d bytes, want the whole buffer", a.lens[0])
	}
	// After the first read (which took everything), each message's frame is
	// already buffered; feed them one read at a time to see the asks.
	a = &asks{r: iotest.OneByteReader(bytes.NewReader(encode(msgs[:3], 0)))}
	rd := NewReader(a, 1<<20)
	if _, err := rd.Read(nil); err != nil {
		t.Fatal(err)
	}
	a.lens = a.lens[:0]
	if _, err := rd.Read(nil); err != nil {
		t.Fatal(err)
	}
	// The second message's reads fill the buffer towards one 108-byte frame.
	if len(a.lens) == 0 || a.lens[0] != HeaderSize+100 {
		t.Errorf("after a 100-byte message, reads asked for %v; want the first to ask for %d", a.lens, HeaderSize+100)
	}
	for _, n := range a.lens {
		if n > HeaderSize+100 {
			t.Errorf("a read asked for %d bytes, more than one 108-byte frame", n)
		}
	}
}
