package sock_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
)

func TestPeerCredentials(t *testing.T) {
	for _, network := range unixNets {
		t.Run(network, func(t *testing.T) {
			ctx := ctxT(t)
			// Accepting side: the credentials of the dialing process.
			addr, _ := sockAddr(t, network)
			l := listen(t, addr, nil)
			p := ipctest.StartPeer(t, "dial-send", addr)
			c, err := l.AcceptConn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cred, err := ipc.PeerCredentials(c)
			if err != nil {
				t.Fatal(err)
			}
			want := ipc.Cred{PID: p.Pid(), UID: os.Getuid(), GID: os.Getgid()}
			if cred != want {
				t.Fatalf("accepting side: %+v, want %+v", cred, want)
			}
			if m, err := c.Recv(ctx, nil); err != nil || string(m) != "hello" {
				t.Fatalf("recv %q, %v", m, err)
			}
			c.Close()
			p.Expect(t, "eof", 10*time.Second)

			// Dialing side: the credentials of the listening process.
			addr2, _ := sockAddr(t, network)
			lp, _ := startListener(t, ipctest.Command("listen", addr2))
			d, err := ipc.Dial(ctx, addr2, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			cred, err = ipc.PeerCredentials(d)
			if want := (ipc.Cred{PID: lp.Pid(), UID: os.Getuid(), GID: os.Getgid()}); err != nil || cred != want {
				t.Fatalf("dialing side: %+v, %v; want %+v", cred, err, want)
			}
		})
	}
}

func TestPeerCredentialsUnsupported(t *testing.T) {
	s, c := pair(t, "tcp://127.0.0.1:0", nil, nil)
	for _, conn := range []ipc.Conn{s, c} {
		if _, err := ipc.PeerCredentials(conn); !errors.Is(err, ipc.ErrUnsupported) {
			t.Fatalf("PeerCredentials over tcp: %v, want ErrUnsupported", err)
		}
		if err := ipc.SendFiles(ctxT(t), conn, nil, os.Stdin); !errors.Is(err, ipc.ErrUnsupported) {
			t.Fatalf("SendFiles over tcp: %v, want ErrUnsupported", err)
		}
	}
}

// TestAllowUIDsDial: a client that allows only its own uid refuses a
// listener run by uid 65534.
func TestAllowUIDsDial(t *testing.T) {
	for _, network := range unixNets {
		t.Run(network, func(t *testing.T) {
			path := filepath.Join(openDir(t), "s.sock")
			addr := network + "://" + path
			p, _ := startListener(t, nobody(t, "listen", addr, "666"))
			ctx := ctxT(t)
			_, err := ipc.Dial(ctx, addr, &ipc.Config{AllowUIDs: []int{os.Getuid()}})
			if !errors.Is(err, ipc.ErrPeerNotAllowed) {
				t.Fatalf("dial a uid-65534 listener allowing only uid %d: %v, want ErrPeerNotAllowed", os.Getuid(), err)
			}
			c, err := ipc.Dial(ctx, addr, &ipc.Config{AllowUIDs: []int{os.Getuid(), 65534}})
			if err != nil {
				t.Fatalf("dial allowing 65534: %v", err)
			}
			defer c.Close()
			if cred, _ := ipc.PeerCredentials(c); cred.UID != 65534 || cred.PID != p.Pid() {
				t.Fatalf("listener credentials %+v, want uid 65534 pid %d", cred, p.Pid())
			}
		})
	}
}

// TestAllowUIDsAccept: a listener that allows only its own uid never hands
// out a connection from uid 65534, which sees its connection closed, and
// goes on to accept an allowed peer.
func TestAllowUIDsAccept(t *testing.T) {
	for _, network := range unixNets {
		t.Run(network, func(t *testing.T) {
			path := filepath.Join(openDir(t), "s.sock")
			addr := network + "://" + path
			l := listen(t, addr, &ipc.Config{Perm: 0o666, AllowUIDs: []int{os.Getuid()}})
			ctx := ctxT(t)
			type res struct {
				c   ipc.Conn
				err error
			}
			ch := make(chan res, 1)
			go func() {
				c, err := l.AcceptConn(ctx)
				ch <- res{c, err}
			}()
			bad := ipctest.Start(t, nobody(t, "dial-send", addr))
			bad.Expect(t, "eof", 10*time.Second) // closed by the listener
			select {
			case r := <-ch:
				t.Fatalf("Accept returned %v, %v for a peer that is not allowed", r.c, r.err)
			default:
			}
			good := ipctest.StartPeer(t, "dial-send", addr)
			r := <-ch
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.c.Close()
			if cred, _ := ipc.PeerCredentials(r.c); cred.PID != good.Pid() || cred.UID != os.Getuid() {
				t.Fatalf("accepted %+v, want the allowed peer %d", cred, good.Pid())
			}
		})
	}
}
