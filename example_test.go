package ipc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/ipcgo/ipc"
)

// A server and a client exchange messages over a Unix socket. (Both ends
// are in one process here; usually they are two.)
func ExampleListen() {
	dir, err := os.MkdirTemp("", "ipc-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	addr := "unix://" + filepath.Join(dir, "app.sock")

	l, err := ipc.Listen(addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	// The server answers every message with its upper-case version.
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.AcceptConn(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		var buf []byte
		for {
			buf, err = c.Recv(context.Background(), buf)
			if errors.Is(err, io.EOF) {
				return // the client closed its end
			}
			if err != nil {
				log.Fatal(err)
			}
			for i, b := range buf {
				if 'a' <= b && b <= 'z' {
					buf[i] = b - 'a' + 'A'
				}
			}
			if err := c.Send(context.Background(), buf); err != nil {
				log.Fatal(err)
			}
		}
	}()

	c, err := ipc.Dial(context.Background(), addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range []string{"hello", "", "message boundaries are kept"} {
		if err := c.Send(context.Background(), []byte(m)); err != nil {
			log.Fatal(err)
		}
		reply, err := c.Recv(context.Background(), nil)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%q\n", reply)
	}
	c.Close()
	<-done
	_, err = c.Recv(context.Background(), nil)
	fmt.Println(errors.Is(err, net.ErrClosed))
	// Output:
	// "HELLO"
	// ""
	// "MESSAGE BOUNDARIES ARE KEPT"
	// true
}

func ExampleParseAddr() {
	for _, s := range []string{
		"unix:///run/app.sock",
		"tcp://localhost:7000",
		"posixmq:///orders",
		"pipe:",
		"unix://relative/path",
	} {
		a, err := ipc.ParseAddr(s)
		if err != nil {
			fmt.Println(errors.Is(err, ipc.ErrBadAddress), err)
			continue
		}
		fmt.Printf("%s path=%q host=%q\n", a.Network(), a.Path, a.Host)
	}
	// Output:
	// unix path="/run/app.sock" host=""
	// tcp path="" host="localhost:7000"
	// posixmq path="/orders" host=""
	// pipe path="" host=""
	// true ipc: invalid address: "unix://relative/path": the path must be absolute, after "unix://"
}

// HTTP over a Unix socket: the Listener is a net.Listener, and DialStream
// gives an http.Transport its connections.
func ExampleDialStream() {
	dir, err := os.MkdirTemp("", "ipc-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	addr := "unix://" + filepath.Join(dir, "http.sock")

	l, err := ipc.Listen(addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.URL.Path)
	})}
	go srv.Serve(l)
	defer srv.Close()

	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return ipc.DialStream(ctx, addr, nil)
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://app/status")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, string(body))
	// Output:
	// 200 OK hello from /status
}
