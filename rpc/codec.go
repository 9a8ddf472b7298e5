package rpc

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// protoCodec is the default codec: protobuf, as gRPC's own. Marshalling
// appends to the frame buffer, so a call costs no extra copy.
type protoCodec struct{}

func (protoCodec) Name() string { return "proto" }

func (protoCodec) Marshal(v any) ([]byte, error) { return protoCodec{}.appendMarshal(nil, v) }

func (protoCodec) appendMarshal(b []byte, v any) ([]byte, error) {
	m := messageV2(v)
	if m == nil {
		return nil, fmt.Errorf("rpc: proto codec: %T is not a proto.Message", v)
	}
	return proto.MarshalOptions{}.MarshalAppend(b, m)
}

func (protoCodec) Unmarshal(data []byte, v any) error {
	m := messageV2(v)
	if m == nil {
		return fmt.Errorf("rpc: proto codec: %T is not a proto.Message", v)
	}
	return proto.Unmarshal(data, m)
}

func messageV2(v any) proto.Message {
	switch m := v.(type) {
	case proto.Message:
		return m
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(m)
	}
	return nil
}

// appendMarshal appends v encoded with c to b.
func appendMarshal(c encoding.Codec, b []byte, v any) ([]byte, error) {
	if pc, ok := c.(protoCodec); ok {
		return pc.appendMarshal(b, v)
	}
	p, err := c.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, p...), nil
}

// codecV2 adapts a gRPC CodecV2 (what encoding.GetCodecV2 returns) to the
// byte-slice Codec this package uses.
type codecV2 struct{ c encoding.CodecV2 }

func (c codecV2) Name() string { return c.c.Name() }

func (c codecV2) Marshal(v any) ([]byte, error) {
	bs, err := c.c.Marshal(v)
	if err != nil {
		return nil, err
	}
	defer bs.Free()
	return bs.Materialize(), nil
}

func (c codecV2) Unmarshal(data []byte, v any) error {
	return c.c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, v)
}

// codecByName returns the registered codec for a content subtype, or nil.
func codecByName(name string) encoding.Codec {
	if name == "proto" {
		return protoCodec{}
	}
	if c := encoding.GetCodec(name); c != nil {
		return c
	}
	if c := encoding.GetCodecV2(name); c != nil {
		return codecV2{c}
	}
	return nil
}
