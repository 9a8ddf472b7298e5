package mq

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"time"
)

// The files of the local backend (PROTOCOL.md, "mq local backend") each
// start with a 32-byte file header, followed by records (record.go).
const (
	fileMagic      = "IPCMQ\x00\x00\x01"
	fileVersion    = 1
	fileHeaderSize = 32

	kindQueue  = 1 // the MQ file at the root of a queue directory; a = directory id
	kindLog    = 2 // a log file of a stream; a = first sequence the file may hold, b = file number
	kindStream = 3 // a stream's configuration; a = stream id
	kindGroup  = 4 // a group's journal; a = stream id
)

// fileHeader is the decoded header of a file of the local backend.
type fileHeader struct {
	Kind uint32
	A    uint64
	B    uint32
}

func (h fileHeader) encode() []byte {
	b := make([]byte, fileHeaderSize)
	copy(b, fileMagic)
	binary.LittleEndian.PutUint32(b[8:], fileVersion)
	binary.LittleEndian.PutUint32(b[12:], h.Kind)
	binary.LittleEndian.PutUint64(b[16:], h.A)
	binary.LittleEndian.PutUint32(b[24:], h.B)
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
	return b
}

// validateFileHeader checks the magic, version, checksum and kind of the
// header at the start of b, read from file; it is the one place a file of
// the local backend is validated. A foreign file or another version is
// ErrVersion, a damaged header ErrCorrupt (a *CorruptError at offset 0).
func validateFileHeader(b []byte, file string, kind uint32) (fileHeader, error) {
	if len(b) < fileHeaderSize {
		return fileHeader{}, &CorruptError{File: file, Reason: fmt.Sprintf("file header truncated (%d of %d bytes)", len(b), fileHeaderSize)}
	}
	if string(b[:8]) != fileMagic {
		return fileHeader{}, fmt.Errorf("%w: %s is not a queue file (magic %q)", ErrVersion, file, b[:8])
	}
	if crc32.Checksum(b[:28], castagnoli) != binary.LittleEndian.Uint32(b[28:]) {
		return fileHeader{}, &CorruptError{File: file, Reason: "file header checksum mismatch"}
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != fileVersion {
		return fileHeader{}, fmt.Errorf("%w: %s has layout version %d, this build reads %d", ErrVersion, file, v, fileVersion)
	}
	h := fileHeader{Kind: binary.LittleEndian.Uint32(b[12:]), A: binary.LittleEndian.Uint64(b[16:]), B: binary.LittleEndian.Uint32(b[24:])}
	if h.Kind != kind {
		return h, &CorruptError{File: file, Reason: fmt.Sprintf("file kind %d, want %d", h.Kind, kind)}
	}
	return h, nil
}

// Log record bodies: the first byte is the type.
const (
	recMsg    = 'M' // a message
	recDelete = 'D' // a message removed (Replay, or explicitly)
)

// logMsg is a message as a log record holds it.
type logMsg struct {
	Seq       uint64
	Published int64 // unix ns
	NotBefore int64 // unix ns, 0: at once
	Priority  uint8
	ID, Key   string
	Header    Header
	Data      []byte
}

func appendStr16(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// encodeMsg returns the body of m's record. IDs and keys longer than
// 65535 bytes and headers too large are refused by the caller's size check
// (MaxMsgSize covers data plus headers).
func encodeMsg(m *logMsg) ([]byte, error) {
	if len(m.ID) > 0xffff || len(m.Key) > 0xffff || len(m.Header) > 0xffff {
		return nil, fmt.Errorf("%w: id, key or header count above 65535", ErrTooLarge)
	}
	b := make([]byte, 0, 64+len(m.ID)+len(m.Key)+len(m.Data)+headerSize(m.Header))
	b = append(b, recMsg)
	b = binary.LittleEndian.AppendUint64(b, m.Seq)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.Published))
	b = binary.LittleEndian.AppendUint64(b, uint64(m.NotBefore))
	b = append(b, m.Priority)
	b = appendStr16(b, m.ID)
	b = appendStr16(b, m.Key)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(m.Header)))
	for k, vs := range m.Header {
		if len(k) > 0xffff || len(vs) > 0xffff {
			return nil, fmt.Errorf("%w: header %q too large", ErrTooLarge, k)
		}
		b = appendStr16(b, k)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(vs)))
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	return append(b, m.Data...), nil
}

func headerSize(h Header) int {
	n := 0
	for k, vs := range h {
		n += 4 + len(k)
		for _, v := range vs {
			n += 4 + len(v)
		}
	}
	return n
}

// decoder reads fields from a record body; the first short read sets bad.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) take(n int) []byte {
	if d.bad || n < 0 || len(d.b) < n {
		d.bad = true
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}
func (d *decoder) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}
func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}
func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}
func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}
func (d *decoder) str16() string { return string(d.take(int(d.u16()))) }

// decodeMsg decodes a recMsg body. If withData is false the data is not
// copied (the index needs only the attributes).
func decodeMsg(body []byte, withData bool) (*logMsg, error) {
	d := decoder{b: body}
	if d.u8() != recMsg {
		return nil, fmt.Errorf("not a message record")
	}
	m := &logMsg{Seq: d.u64(), Published: int64(d.u64()), NotBefore: int64(d.u64()), Priority: d.u8()}
	m.ID = d.str16()
	m.Key = d.str16()
	nh := int(d.u16())
	for i := 0; i < nh && !d.bad; i++ {
		if m.Header == nil {
			m.Header = Header{}
		}
		k := d.str16()
		nv := int(d.u16())
		vs := make([]string, 0, min(nv, 16))
		for j := 0; j < nv && !d.bad; j++ {
			vs = append(vs, string(d.take(int(d.u32()))))
		}
		m.Header[k] = vs
	}
	if d.bad || m.Priority > MaxPriority {
		return nil, fmt.Errorf("message record malformed")
	}
	if withData {
		m.Data = append([]byte{}, d.b...)
	}
	return m, nil
}

func encodeDelete(seq uint64) []byte {
	return binary.LittleEndian.AppendUint64([]byte{recDelete}, seq)
}

// Group journal events: fixed-size bodies.
const (
	evConfig   = 'C' // JSON groupFile, first record of a journal
	evDeliver  = 'd' // seq attempt owner deadline
	evAck      = 'a'
	evNak      = 'n' // seq, time = not before
	evProgress = 'p' // seq, time = new deadline
	evRelease  = 'r' // seq: owner gave it back (consumer closed)
	evDying    = 'y' // seq owner: being moved to the dead-letter stream by owner
	evDead     = 'x' // seq attempt=reason: dead-lettered (or dropped)
	evSize     = 1 + 8 + 4 + 8 + 4 + 4 + 8
)

// event is one change of a group's state.
type event struct {
	Type    byte
	Seq     uint64
	Attempt uint32
	Owner   owner
	Time    int64 // unix ns: deadline or not-before
}

// owner names a consumer: the segment incarnation, the handle's owner
// token in it, and the consumer's number within the handle.
type owner struct {
	Seg uint64
	Tok uint32
	CID uint32
}

func (e *event) encode() []byte {
	b := make([]byte, 0, evSize)
	b = append(b, e.Type)
	b = binary.LittleEndian.AppendUint64(b, e.Seq)
	b = binary.LittleEndian.AppendUint32(b, e.Attempt)
	b = binary.LittleEndian.AppendUint64(b, e.Owner.Seg)
	b = binary.LittleEndian.AppendUint32(b, e.Owner.Tok)
	b = binary.LittleEndian.AppendUint32(b, e.Owner.CID)
	return binary.LittleEndian.AppendUint64(b, uint64(e.Time))
}

func decodeEvent(body []byte) (event, error) {
	if len(body) != evSize {
		return event{}, fmt.Errorf("event of %d bytes, want %d", len(body), evSize)
	}
	d := decoder{b: body}
	e := event{Type: d.u8(), Seq: d.u64(), Attempt: d.u32()}
	e.Owner = owner{Seg: d.u64(), Tok: d.u32(), CID: d.u32()}
	e.Time = int64(d.u64())
	switch e.Type {
	case evDeliver, evAck, evNak, evProgress, evRelease, evDying, evDead:
		return e, nil
	}
	return event{}, fmt.Errorf("unknown event type %q", e.Type)
}

// streamFile is the JSON body of a stream's configuration record.
type streamFile struct {
	Name            string        `json:"name"`
	Retention       Retention     `json:"retention"`
	MaxAge          time.Duration `json:"max_age"`
	MaxBytes        int64         `json:"max_bytes"`
	MaxMsgs         int64         `json:"max_msgs"`
	MaxMsgSize      int           `json:"max_msg_size"`
	SyncEvery       time.Duration `json:"sync_every"` // SyncPolicy.Interval()
	DuplicateWindow time.Duration `json:"duplicate_window"`
	SegmentBytes    int64         `json:"segment_bytes"`
	Replicas        int           `json:"replicas"`
}

func toStreamFile(c StreamConfig) streamFile {
	return streamFile{c.Name, c.Retention, c.MaxAge, c.MaxBytes, c.MaxMsgs, c.MaxMsgSize, c.Sync.every,
		c.DuplicateWindow, c.SegmentBytes, c.Replicas}
}

func (f streamFile) config() StreamConfig {
	return StreamConfig{Name: f.Name, Retention: f.Retention, MaxAge: f.MaxAge, MaxBytes: f.MaxBytes,
		MaxMsgs: f.MaxMsgs, MaxMsgSize: f.MaxMsgSize, Sync: SyncPolicy{every: f.SyncEvery},
		DuplicateWindow: f.DuplicateWindow, SegmentBytes: f.SegmentBytes, Replicas: f.Replicas}
}

// groupFile is the JSON body of a journal's first record.
type groupFile struct {
	Config GroupConfig `json:"config"`
	// Cursor is where the group starts: every sequence up to it is
	// settled for the group when it is created.
	Cursor uint64 `json:"cursor"`
	// Redelivered and Dead are the group's counters before the first
	// event of the journal (a compacted journal carries them over).
	Redelivered uint64 `json:"redelivered,omitempty"`
	Dead        uint64 `json:"dead,omitempty"`
}

// encodeJSONFile returns a whole file: header and one record of v as JSON.
func encodeJSONFile(h fileHeader, v any) ([]byte, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return AppendRecord(h.encode(), append([]byte{evConfig}, js...))
}

// decodeJSONRecord decodes the first record after the header of b (a file
// named file) as JSON into v and returns where the record ends.
func decodeJSONRecord(b []byte, file string, v any) (int64, error) {
	body, n, err := DecodeRecord(b[fileHeaderSize:], fileHeaderSize)
	if err != nil {
		err.(*CorruptError).File = file
		return 0, err
	}
	if len(body) == 0 || body[0] != evConfig {
		return 0, &CorruptError{File: file, Offset: fileHeaderSize, Reason: "no configuration record"}
	}
	if err := json.Unmarshal(body[1:], v); err != nil {
		return 0, &CorruptError{File: file, Offset: fileHeaderSize, Reason: "configuration: " + err.Error()}
	}
	return int64(fileHeaderSize + n), nil
}

// readJSONFile reads a whole configuration file of kind.
func readJSONFile(path string, kind uint32, v any) (fileHeader, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return fileHeader{}, err
	}
	h, err := validateFileHeader(b, path, kind)
	if err != nil {
		return h, err
	}
	_, err = decodeJSONRecord(b, path, v)
	return h, err
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
