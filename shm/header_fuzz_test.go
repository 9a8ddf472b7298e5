package shm_test

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"testing"

	"github.com/ipcgo/ipc/shm"
)

// Header layout of version 2 (the same as version 1's), as PROTOCOL.md gives it.
const (
	hMagic    = "IPCGOSHM"
	hVersion  = 8
	hHdrSize  = 12
	hSize     = 16
	hPID      = 24
	hUID      = 28
	hCreated  = 32
	hSlots    = 40
	hObjects  = 44
	hSlotOff  = 48
	hDirOff   = 52
	hDataOff  = 56
	hChecksum = 60
	hCursor   = 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// validHeader returns the header of a fresh segment and the segment's size.
func validHeader(tb testing.TB) ([]byte, int64) {
	tb.Helper()
	seg, err := shm.CreateAnonymous(1000, &shm.Config{Perm: 0o600, Slots: 3, Objects: 5})
	if err != nil {
		tb.Fatal(err)
	}
	defer seg.Close()
	return append([]byte(nil), seg.Mem()[:shm.HeaderSize]...), int64(seg.Size())
}

// reseal returns a copy of b with the magic and version fixed and the
// checksum recomputed, so that Validate looks past them at the structure.
func reseal(b []byte) []byte {
	if len(b) < shm.HeaderSize {
		return nil
	}
	c := append([]byte(nil), b...)
	copy(c, hMagic)
	binary.LittleEndian.PutUint32(c[hVersion:], shm.Version)
	binary.LittleEndian.PutUint32(c[hChecksum:], crc32.Checksum(c[:hChecksum], castagnoli))
	return c
}

func put32(b []byte, off int, v uint32) []byte {
	c := append([]byte(nil), b...)
	binary.LittleEndian.PutUint32(c[off:], v)
	return c
}

func put64(b []byte, off int, v uint64) []byte {
	c := append([]byte(nil), b...)
	binary.LittleEndian.PutUint64(c[off:], v)
	return c
}

func FuzzValidate(f *testing.F) {
	valid, size := validHeader(f)
	rnd := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, shm.HeaderSize)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	magicRandom := append([]byte(hMagic), random[len(hMagic):]...)
	long := append(append([]byte(nil), valid...), make([]byte, 4096)...)

	f.Add(valid, size)
	f.Add(long, size)
	f.Add(valid, size+1)
	f.Add(valid, int64(-1))
	f.Add(valid[:shm.HeaderSize-1], size)
	f.Add(valid[:hCursor], size)
	f.Add(valid[:7], size)
	f.Add([]byte{}, int64(0))
	f.Add(put32(valid, 0, 0x58435049), size)                  // bad magic
	f.Add(put32(valid, hVersion, shm.Version+1), size)        // bad version
	f.Add(put32(valid, hChecksum, 0), size)                   // bad checksum
	f.Add(reseal(put32(valid, hSlots, 0)), size)              // no slots
	f.Add(reseal(put32(valid, hSlots, shm.MaxSlots+1)), size) // too many slots
	f.Add(reseal(put32(valid, hObjects, 1<<20)), size)        // too many objects
	f.Add(reseal(put32(valid, hDataOff, 64)), size)           // inconsistent offsets
	f.Add(reseal(put32(valid, hHdrSize, 64)), size)           // wrong header size
	f.Add(reseal(put64(valid, hSize, 1<<62)), int64(1<<62))   // absurd size
	f.Add(reseal(put64(valid, hSize, 100)), int64(100))       // size below the data area
	f.Add(put64(valid, hCursor, uint64(size)+64), size)       // cursor past the end
	f.Add(put64(valid, hCursor, 0), size)                     // cursor in the header
	f.Add(random, size)
	f.Add(magicRandom, size)
	f.Add(reseal(magicRandom), size)

	f.Fuzz(func(t *testing.T, b []byte, fileSize int64) {
		checkValidate(t, b, fileSize)
		if c := reseal(b); c != nil {
			checkValidate(t, c, fileSize)
		}
	})
}

// checkValidate runs Validate and checks what it returns: an error of the
// documented kinds, or a header consistent with the bytes and the layout.
func checkValidate(t *testing.T, b []byte, fileSize int64) {
	h, err := shm.Validate(b, fileSize)
	if err != nil {
		if !errors.Is(err, shm.ErrNotSegment) && !errors.Is(err, shm.ErrVersion) &&
			!errors.Is(err, shm.ErrCorrupt) && !errors.Is(err, shm.ErrSizeMismatch) {
			t.Fatalf("Validate: undocumented error %v", err)
		}
		return
	}
	le := binary.LittleEndian
	if len(b) < shm.HeaderSize || string(b[:len(hMagic)]) != hMagic {
		t.Fatalf("accepted %d bytes without a full header or the magic", len(b))
	}
	if le.Uint32(b[hChecksum:]) != crc32.Checksum(b[:hChecksum], castagnoli) {
		t.Fatal("accepted a header with a wrong checksum")
	}
	want := shm.Header{
		Version:    le.Uint32(b[hVersion:]),
		Size:       le.Uint64(b[hSize:]),
		CreatorPID: le.Uint32(b[hPID:]),
		CreatorUID: le.Uint32(b[hUID:]),
		Created:    int64(le.Uint64(b[hCreated:])),
		Slots:      le.Uint32(b[hSlots:]),
		Objects:    le.Uint32(b[hObjects:]),
		SlotOff:    le.Uint32(b[hSlotOff:]),
		DirOff:     le.Uint32(b[hDirOff:]),
		DataOff:    le.Uint32(b[hDataOff:]),
	}
	if h != want {
		t.Fatalf("Validate = %+v, bytes say %+v", h, want)
	}
	if h.Version != shm.Version || le.Uint32(b[hHdrSize:]) != shm.HeaderSize {
		t.Fatalf("accepted version %d, header size %d", h.Version, le.Uint32(b[hHdrSize:]))
	}
	if h.Slots < 1 || h.Slots > shm.MaxSlots || h.Objects > shm.MaxObjectsForTest {
		t.Fatalf("accepted %d slots, %d objects", h.Slots, h.Objects)
	}
	// Re-derive the layout in 64-bit arithmetic.
	slotOff := uint64(shm.HeaderSize)
	dirOff := slotOff + uint64(h.Slots)*shm.SlotSize
	dataOff := (dirOff + uint64(h.Objects)*shm.EntrySize + shm.Align - 1) / shm.Align * shm.Align
	if uint64(h.SlotOff) != slotOff || uint64(h.DirOff) != dirOff || uint64(h.DataOff) != dataOff {
		t.Fatalf("accepted offsets %d/%d/%d, layout gives %d/%d/%d", h.SlotOff, h.DirOff, h.DataOff, slotOff, dirOff, dataOff)
	}
	if h.Size < dataOff || h.Size > shm.MaxSizeForTest || fileSize < 0 || uint64(fileSize) != h.Size {
		t.Fatalf("accepted size %d for data at %d in a %d-byte file", h.Size, dataOff, fileSize)
	}
	if cur := le.Uint64(b[hCursor:]); cur < dataOff || cur > h.Size {
		t.Fatalf("accepted allocation cursor %d outside [%d, %d]", cur, dataOff, h.Size)
	}
	// The verdict depends on the header only, not on how much of the file
	// b holds.
	if h2, err := shm.Validate(b[:shm.HeaderSize], fileSize); err != nil || h2 != h {
		t.Fatalf("header alone: %+v, %v; with %d bytes: %+v", h2, err, len(b), h)
	}
}

func TestValidateAcceptsFreshHeader(t *testing.T) {
	b, size := validHeader(t)
	h, err := shm.Validate(b, size)
	if err != nil {
		t.Fatal(err)
	}
	if h.Slots != 3 || h.Objects != 5 || h.Size != uint64(size) || h.Version != shm.Version {
		t.Fatalf("Validate = %+v", h)
	}
	checkValidate(t, b, size)
}

// TestValidateRejectsEveryByteChange flips each byte of the checksummed
// part of a valid header (and of the checksum itself) in several ways:
// every change must be rejected, with the error its field calls for.
func TestValidateRejectsEveryByteChange(t *testing.T) {
	valid, size := validHeader(t)
	for i := range hChecksum + 4 {
		for _, x := range []byte{0x01, 0x80, 0xff, 0x5a} {
			b := append([]byte(nil), valid...)
			b[i] ^= x
			_, err := shm.Validate(b, size)
			var want error
			switch {
			case i < len(hMagic):
				want = shm.ErrNotSegment
			case i < hVersion+4:
				want = shm.ErrVersion
			default:
				want = shm.ErrCorrupt
			}
			if !errors.Is(err, want) {
				t.Errorf("byte %d ^ %#x: Validate = %v, want %v", i, x, err, want)
			}
		}
	}
}

func TestValidateSizes(t *testing.T) {
	valid, size := validHeader(t)
	for _, fs := range []int64{0, size - 1, size + 1, -1, size * 2} {
		if _, err := shm.Validate(valid, fs); !errors.Is(err, shm.ErrSizeMismatch) {
			t.Errorf("file size %d for a %d-byte header: %v", fs, size, err)
		}
	}
	for n := range shm.HeaderSize {
		_, err := shm.Validate(valid[:n], size)
		if n < len(hMagic) && !errors.Is(err, shm.ErrNotSegment) || n >= len(hMagic) && !errors.Is(err, shm.ErrCorrupt) {
			t.Errorf("%d header bytes: %v", n, err)
		}
	}
}
