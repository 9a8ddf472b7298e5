package mq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fillClosed makes a queue at dir with stream s holding n messages
// "m0".."m(n-1)" and group g, and closes it.
func fillClosed(t *testing.T, addr string, n int) {
	t.Helper()
	q, err := Open(tctx(t), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustStream(t, q, StreamConfig{Name: "s"})
	if _, err := q.CreateGroup(tctx(t), "s", GroupConfig{Name: "g"}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		mustPub(t, q, "s", fmt.Sprint("m", i), nil)
	}
	q.Close()
}

// recordOffsets returns the offset of every record of a log file.
func recordOffsets(t *testing.T, b []byte) []int64 {
	var offs []int64
	for off := int64(fileHeaderSize); off < int64(len(b)); {
		_, n, err := DecodeRecord(b[off:], off)
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, off)
		off += int64(n)
	}
	return offs
}

func TestLocalDamagedRecord(t *testing.T) {
	addr, dir := localAddr(t)
	fillClosed(t, addr, 5)
	log := filepath.Join(dir, "streams", "s", logName(1))
	b, _ := os.ReadFile(log)
	offs := recordOffsets(t, b)
	b[offs[1]+RecordHeaderSize+3] ^= 0x10 // a flipped bit in the second message's body
	if err := os.WriteFile(log, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Check(tctx(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Problems) != 1 {
		t.Fatalf("Check: %+v", rep.Problems)
	}
	var ce *CorruptError
	p := rep.Problems[0]
	if !errors.As(p, &ce) || ce.File != log || ce.Offset != offs[1] || p.Offset != offs[1] || p.Torn {
		t.Fatalf("problem %+v (%v), want a CorruptError in %s at %d", p, p.err, log, offs[1])
	}
	if rep.Streams[0].Records != 4 || rep.Streams[0].Name != "s" {
		t.Fatalf("streams %+v", rep.Streams)
	}
	// Open steps over the damaged record: the others are served, a copy
	// of the file is in quarantine/.
	q := openT(t, addr)
	ms, err := q.Read(tctx(t), "s", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, string(m.Data))
	}
	if fmt.Sprint(got) != "[m0 m2 m3 m4]" {
		t.Fatalf("served %v", got)
	}
	if qs, _ := os.ReadDir(filepath.Join(dir, "quarantine")); len(qs) != 1 {
		t.Fatalf("quarantine holds %d files", len(qs))
	}
	c, err := q.Consumer(tctx(t), "s", "g")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, want := range []string{"m0", "m2", "m3", "m4"} {
		d := mustNext(t, c, 5*time.Second)
		if string(d.Data) != want {
			t.Fatalf("delivered %q, want %q", d.Data, want)
		}
		mustAck(t, d)
	}
	if pa := mustPub(t, q, "s", "new", nil); pa.Seq != 6 {
		t.Fatalf("publish after damage: seq %d", pa.Seq)
	}
}

func TestLocalDamagedLength(t *testing.T) {
	addr, dir := localAddr(t)
	fillClosed(t, addr, 5)
	log := filepath.Join(dir, "streams", "s", logName(1))
	b, _ := os.ReadFile(log)
	offs := recordOffsets(t, b)
	binary.LittleEndian.PutUint32(b[offs[2]:], 5) // the third record's length: cannot be stepped over
	os.WriteFile(log, b, 0o600)
	rep, _ := Check(tctx(t), dir)
	if rep.OK() {
		t.Fatalf("Check found nothing: %+v", rep)
	}
	q := openT(t, addr)
	ms, err := q.Read(tctx(t), "s", 0, 10)
	if err != nil || len(ms) != 2 {
		t.Fatalf("Read: %d messages, %v", len(ms), err)
	}
	if pa := mustPub(t, q, "s", "new", nil); pa.Seq != 3 {
		t.Fatalf("publish after damage: seq %d", pa.Seq)
	}
	if rep, _ := Check(tctx(t), dir); !rep.OK() {
		t.Fatalf("Check after recovery: %+v", rep.Problems)
	}
}

func TestLocalTornTail(t *testing.T) {
	addr, dir := localAddr(t)
	fillClosed(t, addr, 3)
	log := filepath.Join(dir, "streams", "s", logName(1))
	b, _ := os.ReadFile(log)
	offs := recordOffsets(t, b)
	os.WriteFile(log, b[:offs[2]+5], 0o600) // the last append cut short
	rep, _ := Check(tctx(t), dir)
	if !rep.OK() || len(rep.Problems) != 1 || !rep.Problems[0].Torn {
		t.Fatalf("Check: %+v", rep.Problems)
	}
	q := openT(t, addr)
	if si, _ := q.StreamInfo(tctx(t), "s"); si.Msgs != 2 || si.LastSeq != 2 {
		t.Fatalf("after a torn tail: %+v", si)
	}
	mustPub(t, q, "s", "x", nil)
	if rep, _ := Check(tctx(t), dir); len(rep.Problems) != 0 {
		t.Fatalf("Check after recovery: %+v", rep.Problems)
	}
}

func TestLocalForeignFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "MQ"), []byte("not a queue at all, just some bytes"), 0o600)
	if _, err := Open(tctx(t), "file://"+dir, nil); !errors.Is(err, ErrVersion) {
		t.Fatalf("foreign MQ file: %v", err)
	}
	if _, err := Check(tctx(t), dir); !errors.Is(err, ErrVersion) {
		t.Fatalf("Check of a foreign MQ file: %v", err)
	}
	if _, err := Check(tctx(t), t.TempDir()); !errors.Is(err, ErrVersion) {
		t.Fatalf("Check of an empty directory: %v", err)
	}
	h := fileHeader{Kind: kindQueue, A: 1}.encode()
	binary.LittleEndian.PutUint32(h[8:], 9) // another layout version, checksum redone
	binary.LittleEndian.PutUint32(h[28:], crcOf(h[:28]))
	os.WriteFile(filepath.Join(dir, "MQ"), h, 0o600)
	if _, err := Open(tctx(t), "file://"+dir, nil); !errors.Is(err, ErrVersion) {
		t.Fatalf("another version: %v", err)
	}
	h = fileHeader{Kind: kindQueue, A: 1}.encode()
	h[20] ^= 1
	os.WriteFile(filepath.Join(dir, "MQ"), h, 0o600)
	if _, err := Open(tctx(t), "file://"+dir, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged header: %v", err)
	}

	addr, dir2 := localAddr(t)
	fillClosed(t, addr, 2)
	cfg := filepath.Join(dir2, "streams", "s", "stream")
	b, _ := os.ReadFile(cfg)
	b[len(b)-2] ^= 0xff
	os.WriteFile(cfg, b, 0o600)
	q := openT(t, addr)
	var ce *CorruptError
	if _, err := q.StreamInfo(tctx(t), "s"); !errors.As(err, &ce) || ce.File != cfg {
		t.Fatalf("damaged stream configuration: %v", err)
	}
	log := filepath.Join(dir2, "streams", "s", logName(1))
	lb, _ := os.ReadFile(log)
	copy(lb, "ELF\x7f....")
	os.WriteFile(log, lb, 0o600)
	rep, err := Check(tctx(t), dir2)
	if err != nil || rep.OK() {
		t.Fatalf("Check: %+v %v", rep, err)
	}
	found := false
	for _, p := range rep.Problems {
		found = found || (p.File == log && errors.Is(p, ErrVersion))
	}
	if !found {
		t.Fatalf("foreign log file not reported: %+v", rep.Problems)
	}
}

func TestLocalDamagedJournal(t *testing.T) {
	addr, dir := localAddr(t)
	q, _ := Open(tctx(t), addr, nil)
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g"})
	for i := range 3 {
		mustPub(t, q, "s", fmt.Sprint(i), nil)
	}
	for range 3 {
		mustAck(t, mustNext(t, c, 5*time.Second))
	}
	c.Close()
	q.Close()
	j := filepath.Join(dir, "streams", "s", "g.grp")
	b, _ := os.ReadFile(j)
	b[len(b)-evSize-RecordHeaderSize-3] ^= 0x40 // inside the last-but-one event
	os.WriteFile(j, b, 0o600)
	if rep, _ := Check(tctx(t), dir); rep.OK() {
		t.Fatal("Check missed a damaged journal")
	}
	q2 := openT(t, addr)
	c2, err := q2.Consumer(tctx(t), "s", "g")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	// The events after the damage are lost: the last message is
	// delivered again (at least once), nothing panics.
	d := mustNext(t, c2, 5*time.Second)
	if d.Seq != 3 {
		t.Fatalf("redelivered seq %d", d.Seq)
	}
	mustAck(t, d)
}

func TestLocalPermissions(t *testing.T) {
	for _, c := range []*Config{nil, {DirPerm: 0o750, FilePerm: 0o640}} {
		dir := filepath.Join(t.TempDir(), "q")
		q, err := Open(tctx(t), "file://"+dir, c)
		if err != nil {
			t.Fatal(err)
		}
		mustStream(t, q, StreamConfig{Name: "s"})
		c2 := mustGroup(t, q, "s", GroupConfig{Name: "g"})
		mustPub(t, q, "s", "x", nil)
		c2.Close()
		wantD, wantF := os.FileMode(0o700), os.FileMode(0o600)
		if c != nil {
			wantD, wantF = c.DirPerm, c.FilePerm
		}
		mask := os.FileMode(setUmask(0))
		setUmask(int(mask))
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			want := wantF
			if fi.IsDir() {
				want = wantD
			}
			if got := fi.Mode().Perm(); got != want&^mask {
				t.Errorf("%s: mode %v, want %v", p, got, want&^mask)
			}
			return nil
		})
		q.Close()
	}
}
