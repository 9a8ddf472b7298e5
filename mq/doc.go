// Package mq is the start of a durable message queue between processes.
//
// Only the on-disk record format of the local backend exists so far: a
// record carries its length and a CRC-32C of its body, so a torn or
// damaged record is detected (DecodeRecord returns a *CorruptError naming
// the offset) and never taken for a message. The layout is in PROTOCOL.md
// ("mq record"). ScanRecords walks a log of records the way recovery will:
// a damaged last record is a torn tail to truncate, a damaged record with
// bytes after it is reported as corruption. Caveat: a flipped bit in a
// length field that makes a record reach past the end of the file looks
// like a torn tail, so the records after it would be truncated.
//
// The queue API, the local and JetStream backends, the
// command and the benchmarks do not exist yet.
package mq
