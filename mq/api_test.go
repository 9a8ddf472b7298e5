package mq

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestOpenBadURL(t *testing.T) {
	for _, a := range []string{"", "http://x", "file://host/dir", "file:relative", "://"} {
		_, err := Open(context.Background(), a, nil)
		if !errors.Is(err, ErrBadURL) {
			t.Errorf("Open(%q) = %v, want ErrBadURL", a, err)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	bad := []StreamConfig{{}, {Name: "a/b"}, {Name: "s", MaxAge: -1}, {Name: "s", MaxMsgSize: 1 << 30}, {Name: "s", Retention: 7}}
	for _, c := range bad {
		if _, err := c.withDefaults(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: %v, want ErrBadConfig", c, err)
		}
	}
	if c, err := (StreamConfig{Name: "s"}).withDefaults(); err != nil || c.MaxMsgSize != defaultMaxMsgSize || c.Sync != SyncAlways {
		t.Errorf("defaults: %+v %v", c, err)
	}
	badG := []GroupConfig{{}, {Name: "g", MaxDeliver: -2}, {Name: "g", DeadLetter: "x y"}}
	for _, c := range badG {
		if _, err := c.withDefaults(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: %v, want ErrBadConfig", c, err)
		}
	}
	for _, o := range []*PublishOptions{{Priority: MaxPriority + 1}, {Delay: -1}, {Header: Header{"Mq-Dead-Seq": {"1"}}}} {
		if err := o.validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: %v, want ErrBadConfig", o, err)
		}
	}
}

func TestSyncPolicyText(t *testing.T) {
	for _, p := range []SyncPolicy{SyncAlways, SyncNone, SyncEvery(250 * time.Millisecond)} {
		b, err := p.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var q SyncPolicy
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Errorf("%v: round trip %q gives %v, %v", p, b, q, err)
		}
	}
	for _, s := range []string{"", "sometimes", "every -1s", "every x"} {
		var q SyncPolicy
		if err := q.UnmarshalText([]byte(s)); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%q: %v, want ErrBadConfig", s, err)
		}
	}
}
