package mq

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// CheckReport is what Check found in a queue directory of the local
// backend.
type CheckReport struct {
	Dir     string        `json:"dir"`
	Streams []CheckStream `json:"streams"`
	// Problems lists every damaged or foreign file and record found. A
	// torn last record of a log or journal (an append in progress, or cut
	// by a crash; recovery truncates it) is listed with Torn set and does
	// not make the report fail.
	Problems []CheckProblem `json:"problems"`
}

// OK reports whether Check found no damage (torn tails aside).
func (r CheckReport) OK() bool {
	for _, p := range r.Problems {
		if !p.Torn {
			return false
		}
	}
	return true
}

// CheckStream describes one stream as stored.
type CheckStream struct {
	Name     string   `json:"name"`
	Files    int      `json:"files"`    // log files
	Records  int      `json:"records"`  // whole records in them
	Messages int      `json:"messages"` // message records
	FirstSeq uint64   `json:"first_seq"`
	LastSeq  uint64   `json:"last_seq"`
	Groups   []string `json:"groups"`
}

// CheckProblem is one damaged file or record.
type CheckProblem struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
	Err    string `json:"error"`
	Torn   bool   `json:"torn,omitempty"`
	err    error
}

func (p CheckProblem) Error() string { return p.Err }

// Unwrap returns the error found (a *CorruptError, or one wrapping
// ErrVersion for a foreign file).
func (p CheckProblem) Unwrap() error { return p.err }

// Check verifies the queue directory dir of the local backend without
// changing it: every file's header (magic, version, checksum), every
// record's length and CRC, every record's decoding, and the order of
// sequences. It may run while processes use the queue (a record being
// appended shows as a torn tail). The error is for a directory Check
// cannot read or that is not a queue (ErrVersion); damage is in the
// report.
func Check(ctx context.Context, dir string) (CheckReport, error) {
	r := CheckReport{Dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, "MQ"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return r, fmt.Errorf("%w: %s holds no MQ file", ErrVersion, dir)
		}
		return r, err
	}
	if _, err := validateFileHeader(b, filepath.Join(dir, "MQ"), kindQueue); err != nil {
		return r, err
	}
	ents, err := os.ReadDir(filepath.Join(dir, "streams"))
	if err != nil {
		return r, err
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if e.IsDir() && validName("stream", e.Name()) == nil {
			r.Streams = append(r.Streams, checkStream(&r, filepath.Join(dir, "streams", e.Name()), e.Name()))
		}
	}
	return r, nil
}

func (r *CheckReport) problem(file string, err error, torn bool) {
	p := CheckProblem{File: file, Err: err.Error(), Torn: torn, err: err}
	var ce *CorruptError
	if errors.As(err, &ce) {
		p.Offset = ce.Offset
	}
	r.Problems = append(r.Problems, p)
}

func checkStream(r *CheckReport, dir, name string) CheckStream {
	cs := CheckStream{Name: name}
	var sf streamFile
	h, err := readJSONFile(filepath.Join(dir, "stream"), kindStream, &sf)
	if err != nil {
		r.problem(filepath.Join(dir, "stream"), err, false)
	}
	nos, _ := listLogs(dir)
	var last uint64
	for _, no := range nos {
		path := filepath.Join(dir, logName(no))
		b, err := os.ReadFile(path)
		if err != nil {
			r.problem(path, err, false)
			continue
		}
		cs.Files++
		if _, err := validateFileHeader(b, path, kindLog); err != nil {
			r.problem(path, err, false)
			continue
		}
		off := int64(fileHeaderSize)
		for rest := b[fileHeaderSize:]; len(rest) > 0; {
			body, n, err := DecodeRecord(rest, off)
			if err != nil {
				err.(*CorruptError).File = path
				r.problem(path, err, tornTail(rest))
				if skip := skippable(rest); skip > 0 && !tornTail(rest) {
					off += int64(skip)
					rest = rest[skip:]
					continue
				}
				break
			}
			cs.Records++
			if len(body) > 0 && body[0] == recMsg {
				m, err := decodeMsg(body, false)
				switch {
				case err != nil:
					r.problem(path, &CorruptError{File: path, Offset: off, Reason: err.Error()}, false)
				case m.Seq <= last:
					r.problem(path, &CorruptError{File: path, Offset: off, Reason: fmt.Sprintf("sequence %d after %d", m.Seq, last)}, false)
				default:
					if cs.FirstSeq == 0 {
						cs.FirstSeq = m.Seq
					}
					last, cs.LastSeq = m.Seq, m.Seq
					cs.Messages++
				}
			} else if len(body) == 0 || body[0] != recDelete {
				r.problem(path, &CorruptError{File: path, Offset: off, Reason: "unknown record type"}, false)
			}
			off += int64(n)
			rest = rest[n:]
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		g, ok := strings.CutSuffix(e.Name(), ".grp")
		if !ok {
			continue
		}
		cs.Groups = append(cs.Groups, g)
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			r.problem(path, err, false)
			continue
		}
		gh, err := validateFileHeader(b, path, kindGroup)
		if err != nil {
			r.problem(path, err, false)
			continue
		}
		if gh.A != h.A {
			r.problem(path, &CorruptError{File: path, Reason: "journal of another stream"}, false)
		}
		var gf groupFile
		end, err := decodeJSONRecord(b, path, &gf)
		if err != nil {
			r.problem(path, err, false)
			continue
		}
		for rest := b[end:]; len(rest) > 0; {
			body, n, err := DecodeRecord(rest, end)
			if err == nil {
				if _, derr := decodeEvent(body); derr != nil {
					err = &CorruptError{Offset: end, Reason: derr.Error()}
				}
			}
			if err != nil {
				err.(*CorruptError).File = path
				r.problem(path, err, tornTail(rest))
				break
			}
			end += int64(n)
			rest = rest[n:]
		}
	}
	sort.Strings(cs.Groups)
	return cs
}
