package dsync

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	r := record{Kind: KindElection, Token: 42, TTL: 3 * time.Second, N: 7, Holder: "h/1/ab", Lease: "0102", Value: []byte("leader-1")}
	got, err := decodeRecord(r.encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != r.Kind || got.Token != r.Token || got.TTL != r.TTL || got.N != r.N || got.Holder != r.Holder || got.Lease != r.Lease || !bytes.Equal(got.Value, r.Value) {
		t.Fatalf("got %+v, want %+v", got, r)
	}
	b := r.encode()
	b[10] ^= 1
	if _, err := decodeRecord(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flipped bit: %v, want ErrCorrupt", err)
	}
	b = r.encode()
	b[4] = 9
	if _, err := decodeRecord(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("version 9: %v, want ErrCorrupt", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add((&record{Kind: KindMutex, Holder: "a", Lease: "b"}).encode())
	f.Add((&record{Kind: KindElection, Value: []byte("v")}).encode())
	f.Add([]byte("DSYN"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		if !bytes.Equal(r.encode(), b) {
			t.Fatalf("decoded record does not encode back to its input")
		}
	})
}
