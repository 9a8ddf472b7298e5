package sock_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
)

// TestFilesBetweenProcesses passes a pipe to another process, which reads
// what is written into it, and gets an unlinked file back.
func TestFilesBetweenProcesses(t *testing.T) {
	for _, network := range unixNets {
		t.Run(network, func(t *testing.T) {
			ctx := ctxT(t)
			addr, _ := sockAddr(t, network)
			l := listen(t, addr, nil)
			p := ipctest.Start(t, exitingPeer("recv-file", addr))
			c, err := l.AcceptConn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if err := ipc.SendFiles(ctx, c, []byte("pipe"), r); err != nil {
				t.Fatal(err)
			}
			r.Close() // the peer has its own descriptor now
			if _, err := w.WriteString("through the pipe"); err != nil {
				t.Fatal(err)
			}
			w.Close()
			p.Expect(t, `pipe "through the pipe" cloexec=true`, 10*time.Second)

			m, files, err := ipc.RecvFiles(ctx, c, nil)
			if err != nil || string(m) != "file" || len(files) != 1 {
				t.Fatalf("RecvFiles: %q, %d files, %v", m, len(files), err)
			}
			data, err := io.ReadAll(files[0])
			files[0].Close()
			if err != nil || string(data) != "from the peer" {
				t.Fatalf("read the peer's file: %q, %v", data, err)
			}
			c.Close()
			if err := p.Wait(t, 10*time.Second); err != nil {
				t.Fatalf("peer: %v", err)
			}
		})
	}
}

// TestFilesStayWithTheirMessage interleaves messages with and without
// descriptors, large and small, and checks each arrives with its own.
func TestFilesStayWithTheirMessage(t *testing.T) {
	for _, network := range unixNets {
		t.Run(network, func(t *testing.T) {
			ctx := ctxT(t)
			addr, _ := sockAddr(t, network)
			s, c := pair(t, addr, nil, nil)
			type msg struct {
				body  []byte
				files int
			}
			msgs := []msg{
				{[]byte("a"), 0}, {[]byte("b"), 1}, {[]byte("c"), 0}, {nil, 2}, {[]byte("d"), 1},
				{pattern(3<<20, 1), 3}, {pattern(100, 2), 0}, {pattern(9<<20, 3), 1}, {[]byte("e"), 0},
			}
			wait := run(t, func() {
				for i, m := range msgs {
					var files []*os.File
					for j := range m.files {
						f, err := os.CreateTemp(t.TempDir(), "f")
						if err != nil {
							t.Error(err)
							return
						}
						fmt.Fprintf(f, "message %d file %d", i, j)
						f.Seek(0, io.SeekStart)
						defer f.Close()
						files = append(files, f)
					}
					if err := ipc.SendFiles(ctx, c, m.body, files...); err != nil {
						t.Error(err)
						return
					}
				}
			})
			for i, m := range msgs {
				got, files, err := ipc.RecvFiles(ctx, s, nil)
				if err != nil {
					t.Fatal(err)
				}
				sameBytes(t, got, m.body)
				if len(files) != m.files {
					t.Fatalf("message %d came with %d files, want %d", i, len(files), m.files)
				}
				for j, f := range files {
					data, err := io.ReadAll(f)
					f.Close()
					if want := fmt.Sprintf("message %d file %d", i, j); err != nil || string(data) != want {
						t.Fatalf("message %d file %d holds %q, %v", i, j, data, err)
					}
				}
			}
			wait()
		})
	}
}

// TestRecvClosesFiles: Recv closes the descriptors of the message it
// returns, and Close those received and not handed out. The test passes
// the write end of a pipe: once every copy is closed, the read end gets
// EOF.
func TestRecvClosesFiles(t *testing.T) {
	for _, network := range unixNets {
		for _, how := range []string{"recv", "close"} {
			t.Run(network+"/"+how, func(t *testing.T) {
				ctx := ctxT(t)
				addr, _ := sockAddr(t, network)
				s, c := pair(t, addr, nil, nil)
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				if err := c.Send(ctx, []byte("first")); err != nil {
					t.Fatal(err)
				}
				if err := ipc.SendFiles(ctx, c, []byte("with a pipe"), w); err != nil {
					t.Fatal(err)
				}
				w.Close()
				if m, err := s.Recv(ctx, nil); err != nil || string(m) != "first" {
					t.Fatalf("recv %q, %v", m, err)
				}
				if how == "recv" {
					if m, err := s.Recv(ctx, nil); err != nil || string(m) != "with a pipe" {
						t.Fatalf("recv %q, %v", m, err)
					}
				} else {
					s.Close()
				}
				r.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := r.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("read end of the pipe: %d, %v; want EOF (a copy of the write end is still open)", n, err)
				}
			})
		}
	}
}

func TestTooManyFiles(t *testing.T) {
	for _, network := range unixNets {
		t.Run(network, func(t *testing.T) {
			ctx := ctxT(t)
			addr, _ := sockAddr(t, network)
			s, c := pair(t, addr, nil, nil)
			files := make([]*os.File, ipc.MaxFiles+1)
			for i := range files {
				files[i] = os.Stdin
			}
			if err := ipc.SendFiles(ctx, c, []byte("x"), files...); !errors.Is(err, ipc.ErrMessageTooLarge) {
				t.Fatalf("SendFiles with %d files: %v, want ErrMessageTooLarge", len(files), err)
			}
			if err := ipc.SendFiles(ctx, c, []byte("y"), files[:ipc.MaxFiles]...); err != nil {
				t.Fatalf("SendFiles with %d files: %v", ipc.MaxFiles, err)
			}
			m, got, err := ipc.RecvFiles(ctx, s, nil)
			if err != nil || string(m) != "y" || len(got) != ipc.MaxFiles {
				t.Fatalf("RecvFiles: %q, %d files, %v; want only the second message", m, len(got), err)
			}
			for _, f := range got {
				f.Close()
			}
		})
	}
}

// TestSendInterruptedThenFiles: a Send or SendFiles that its context cuts
// short in the middle of a large frame (nobody reading) keeps the rest of
// it; the next Send or SendFiles writes that rest first, so the receiver
// gets the interrupted message whole, then the next one, each with its own
// descriptors.
func TestSendInterruptedThenFiles(t *testing.T) {
	for _, first := range []string{"Send", "SendFiles"} {
		for _, next := range []string{"Send", "SendFiles"} {
			t.Run(first+"/"+next, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
				defer cancel()
				addr, _ := sockAddr(t, "unix")
				s, c := pair(t, addr, nil, nil)
				send := func(ctx context.Context, how string, msg []byte) error {
					if how == "Send" {
						return c.Send(ctx, msg)
					}
					f, err := os.CreateTemp(t.TempDir(), "f")
					if err != nil {
						return err
					}
					defer f.Close()
					if _, err := fmt.Fprintf(f, "%d bytes", len(msg)); err != nil {
						return err
					}
					if _, err := f.Seek(0, io.SeekStart); err != nil {
						return err
					}
					return ipc.SendFiles(ctx, c, msg, f)
				}
				big := pattern(8<<20, 7) // far more than the socket buffers
				cut, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				err := send(cut, first, big)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("%s of %d bytes with nobody reading: %v, want the context's error", first, len(big), err)
				}
				small := []byte("after the interrupted one")
				wait := run(t, func() {
					if err := send(ctx, next, small); err != nil {
						t.Errorf("%s after the interrupted %s: %v", next, first, err)
					}
				})
				for i, want := range [][]byte{big, small} {
					how := []string{first, next}[i]
					got, files, err := ipc.RecvFiles(ctx, s, nil)
					if err != nil {
						t.Fatalf("RecvFiles %d: %v", i, err)
					}
					sameBytes(t, got, want)
					wantFiles := 0
					if how == "SendFiles" {
						wantFiles = 1
					}
					if len(files) != wantFiles {
						t.Fatalf("message %d (%s) came with %d files, want %d", i, how, len(files), wantFiles)
					}
					for _, f := range files {
						data, err := io.ReadAll(f)
						f.Close()
						if w := fmt.Sprintf("%d bytes", len(want)); err != nil || string(data) != w {
							t.Fatalf("message %d: its file holds %q, %v; want %q", i, data, err, w)
						}
					}
				}
				wait()
			})
		}
	}
}
