package mq

import (
	"errors"
	"testing"
)

func TestScanRecords(t *testing.T) {
	var log []byte
	var ends []int
	for _, s := range []string{"one", "two", "three"} {
		log, _ = AppendRecord(log, []byte(s))
		ends = append(ends, len(log))
	}
	if n, end, err := ScanRecords(log, "f"); err != nil || n != 3 || end != int64(len(log)) {
		t.Fatalf("whole log: n %d end %d err %v", n, end, err)
	}
	for cut := ends[1] + 1; cut < len(log); cut++ { // torn third record
		n, end, err := ScanRecords(log[:cut], "f")
		if err != nil || n != 2 || end != int64(ends[1]) {
			t.Fatalf("cut at %d: n %d end %d err %v, want 2 records ending at %d", cut, n, end, err, ends[1])
		}
	}
	bad := append([]byte(nil), log...)
	bad[ends[1]-1] ^= 0x40 // the second record's body, with a record after it
	n, end, err := ScanRecords(bad, "f")
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != "f" || ce.Offset != int64(ends[0]) || n != 1 || end != int64(ends[0]) {
		t.Fatalf("mid-log damage: n %d end %d err %v, want CorruptError in f at %d", n, end, err, ends[0])
	}
	last := append([]byte(nil), log...)
	last[len(last)-1] ^= 1 // the last record's body: torn tail
	if n, end, err := ScanRecords(last, "f"); err != nil || n != 2 || end != int64(ends[1]) {
		t.Fatalf("damaged last record: n %d end %d err %v", n, end, err)
	}
}
