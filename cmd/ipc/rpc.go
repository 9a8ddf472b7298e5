package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ipcgo/ipc/rpc"
)

// Errors of `ipc rpc`.
var (
	errNoReflection   = errors.New("the server has no reflection service (grpc.reflection.v1)")
	errUnknownService = errors.New("unknown service")
	errUnknownMethod  = errors.New("unknown method")
	errBadRequest     = errors.New("bad request JSON")
)

func newRPCCmd() *cobra.Command {
	var grpcGo, asJSON bool
	cmd := &cobra.Command{
		Use:   "rpc",
		Short: "List, describe and call the services of an rpc (or grpc-go) server through its reflection service",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return usageError{errors.New("missing rpc subcommand")} },
	}
	cmd.PersistentFlags().BoolVar(&grpcGo, "grpc", false, "the server is grpc-go's own (HTTP/2 over the ipc address)")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "report as JSON")
	with := func(run func(ctx context.Context, cc grpc.ClientConnInterface, r *reflector, out io.Writer, args []string) error) func(*cobra.Command, []string) error {
		return func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			cc, closeCC, err := dialRPC(ctx, args[0], grpcGo)
			if err != nil {
				return err
			}
			defer closeCC()
			r, err := newReflector(ctx, cc)
			if err != nil {
				return err
			}
			defer r.close()
			return run(ctx, cc, r, c.OutOrStdout(), args)
		}
	}
	list := &cobra.Command{
		Use: "list ADDR", Short: "List the services", Args: exactArgs(1),
		RunE: with(func(ctx context.Context, _ grpc.ClientConnInterface, r *reflector, out io.Writer, args []string) error {
			names, err := r.services()
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(out).Encode(map[string]any{"services": names})
			}
			for _, n := range names {
				fmt.Fprintln(out, n)
			}
			return nil
		}),
	}
	describe := &cobra.Command{
		Use: "describe ADDR SERVICE", Short: "Show a service's methods", Args: exactArgs(2),
		RunE: with(func(ctx context.Context, _ grpc.ClientConnInterface, r *reflector, out io.Writer, args []string) error {
			sd, err := r.service(args[1])
			if err != nil {
				return err
			}
			type methodJSON struct {
				Name         string `json:"name"`
				Input        string `json:"input"`
				Output       string `json:"output"`
				ClientStream bool   `json:"client_streaming"`
				ServerStream bool   `json:"server_streaming"`
			}
			var ms []methodJSON
			for i := 0; i < sd.Methods().Len(); i++ {
				m := sd.Methods().Get(i)
				ms = append(ms, methodJSON{string(m.Name()), string(m.Input().FullName()), string(m.Output().FullName()), m.IsStreamingClient(), m.IsStreamingServer()})
			}
			if asJSON {
				return json.NewEncoder(out).Encode(map[string]any{"service": sd.FullName(), "methods": ms})
			}
			fmt.Fprintf(out, "service %s {\n", sd.FullName())
			for _, m := range ms {
				in, o := m.Input, m.Output
				if m.ClientStream {
					in = "stream " + in
				}
				if m.ServerStream {
					o = "stream " + o
				}
				fmt.Fprintf(out, "  rpc %s(%s) returns (%s);\n", m.Name, in, o)
			}
			fmt.Fprintln(out, "}")
			return nil
		}),
	}
	call := &cobra.Command{
		Use: "call ADDR pkg.Service/Method [JSON]", Short: "Call a unary or server-streaming method with a JSON request; prints each response as JSON", Args: minArgs(2),
		RunE: with(func(ctx context.Context, cc grpc.ClientConnInterface, r *reflector, out io.Writer, args []string) error {
			if len(args) > 3 {
				return usageError{errors.New("too many arguments")}
			}
			body := "{}"
			if len(args) == 3 {
				body = args[2]
			}
			return r.call(ctx, cc, out, args[1], body)
		}),
	}
	cmd.AddCommand(list, describe, call)
	return cmd
}

// dialRPC connects to an rpc server, or with grpcGo to a grpc-go server,
// at the ipc address addr.
func dialRPC(ctx context.Context, addr string, grpcGo bool) (grpc.ClientConnInterface, func(), error) {
	if grpcGo {
		cc, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(rpc.ContextDialer(nil)))
		if err != nil {
			return nil, nil, err
		}
		return cc, func() { cc.Close() }, nil
	}
	cc, err := rpc.Dial(ctx, addr)
	if err != nil {
		return nil, nil, err
	}
	return cc, func() { cc.Close() }, nil
}

// Reflection methods, newest first. Their messages are the same on the
// wire, so the v1 types serve for both.
var reflectionMethods = []string{
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}

// reflector asks a server's reflection service (v1, or v1alpha if the
// server has only that) for its services and descriptors.
type reflector struct {
	ctx    context.Context
	cc     grpc.ClientConnInterface
	next   int // index of the next reflection method to try
	st     grpc.ClientStream
	cancel context.CancelFunc
	files  map[string]*descriptorpb.FileDescriptorProto
}

func newReflector(ctx context.Context, cc grpc.ClientConnInterface) (*reflector, error) {
	r := &reflector{ctx: ctx, cc: cc, files: map[string]*descriptorpb.FileDescriptorProto{}}
	return r, r.open()
}

// open opens a stream to the next reflection method.
func (r *reflector) open() error {
	r.close()
	ctx, cancel := context.WithCancel(r.ctx)
	st, err := r.cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, reflectionMethods[r.next])
	r.next++
	if err != nil {
		cancel()
		return reflectionErr(err)
	}
	r.st, r.cancel = st, cancel
	return nil
}

func (r *reflector) close() {
	if r.st != nil {
		r.st.CloseSend()
		r.cancel()
		r.st = nil
	}
}

func reflectionErr(err error) error {
	if status.Code(err) == codes.Unimplemented {
		return errNoReflection
	}
	return err
}

func (r *reflector) ask(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
	resp := &rpb.ServerReflectionResponse{}
	err := r.st.SendMsg(req)
	if err == nil || err == io.EOF { // io.EOF: the stream ended, RecvMsg tells why
		err = r.st.RecvMsg(resp)
	}
	if status.Code(err) == codes.Unimplemented && r.next < len(reflectionMethods) {
		if err := r.open(); err != nil {
			return nil, err
		}
		return r.ask(req)
	}
	if err != nil {
		return nil, reflectionErr(err)
	}
	if e := resp.GetErrorResponse(); e != nil {
		return nil, status.Error(codes.Code(e.GetErrorCode()), e.GetErrorMessage())
	}
	return resp, nil
}

func (r *reflector) services() ([]string, error) {
	resp, err := r.ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names, nil
}

// add records the files of resp and asks for the dependencies not yet
// known.
func (r *reflector) add(resp *rpb.ServerReflectionResponse) error {
	for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(b, fd); err != nil {
			return fmt.Errorf("reflection: bad file descriptor: %w", err)
		}
		r.files[fd.GetName()] = fd
	}
	for _, fd := range r.files {
		for _, dep := range fd.GetDependency() {
			if _, ok := r.files[dep]; ok {
				continue
			}
			resp, err := r.ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: dep}})
			if err != nil {
				return err
			}
			return r.add(resp)
		}
	}
	return nil
}

// service resolves the service name through the server's descriptors.
func (r *reflector) service(name string) (protoreflect.ServiceDescriptor, error) {
	resp, err := r.ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: name}})
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("%w: %s", errUnknownService, name)
	}
	if err != nil {
		return nil, err
	}
	if err := r.add(resp); err != nil {
		return nil, err
	}
	set := &descriptorpb.FileDescriptorSet{}
	for _, fd := range r.files {
		set.File = append(set.File, fd)
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, fmt.Errorf("reflection: %w", err)
	}
	d, err := files.FindDescriptorByName(protoreflect.FullName(name))
	if errors.Is(err, protoregistry.NotFound) {
		return nil, fmt.Errorf("%w: %s", errUnknownService, name)
	}
	if err != nil {
		return nil, err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a service", errUnknownService, name)
	}
	return sd, nil
}

// call calls method ("pkg.Service/Method") with the JSON request body and
// prints each response as one line of JSON.
func (r *reflector) call(ctx context.Context, cc grpc.ClientConnInterface, out io.Writer, method, body string) error {
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return usageError{fmt.Errorf("method %q: want pkg.Service/Method", method)}
	}
	sd, err := r.service(svc)
	if err != nil {
		return err
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return fmt.Errorf("%w: %s has no method %s", errUnknownMethod, svc, name)
	}
	if md.IsStreamingClient() {
		return fmt.Errorf("%w: %s is client-streaming, which call does not support", errUnknownMethod, method)
	}
	req := dynamicpb.NewMessage(md.Input())
	if err := protojson.Unmarshal([]byte(body), req); err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	full := "/" + svc + "/" + name
	print := func(m proto.Message) error {
		b, err := protojson.Marshal(m)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	if !md.IsStreamingServer() {
		resp := dynamicpb.NewMessage(md.Output())
		if err := cc.Invoke(ctx, full, req, resp); err != nil {
			return err
		}
		return print(resp)
	}
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, full)
	if err != nil {
		return err
	}
	if err := st.SendMsg(req); err != nil {
		return err
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	for {
		resp := dynamicpb.NewMessage(md.Output())
		if err := st.RecvMsg(resp); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if err := print(resp); err != nil {
			return err
		}
	}
}
