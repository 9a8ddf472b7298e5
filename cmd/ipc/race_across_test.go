package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/natstest"
	"github.com/ipcgo/ipc/internal/race"
)

func TestRaceAcross(t *testing.T) {
	s := natstest.Start(t, nil)
	const procs, iters = 3, 25
	code, out, _ := run(t, 90*time.Second, "race", "--across", s.URL(), "--procs", "3", "--iters", "25", "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var res race.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if res.Expected != procs*iters || res.Across != s.URL() || len(res.Modes) != 3 {
		t.Fatalf("result %+v", res)
	}
	for _, m := range res.Modes {
		switch m.Mode {
		case "none":
			if m.Final > res.Expected || m.Final == 0 {
				t.Errorf("none: final %d of %d", m.Final, res.Expected)
			}
			t.Logf("none: %d updates lost of %d", m.Lost, res.Expected)
		case "mutex", "semaphore":
			if m.Final != res.Expected || m.Lost != 0 || m.Refused != 0 {
				t.Errorf("%s: final %d, lost %d, refused %d; want exactly %d", m.Mode, m.Final, m.Lost, m.Refused, res.Expected)
			}
		default:
			t.Errorf("unexpected mode %q", m.Mode)
		}
	}
	assertNoBuckets(t, s.URL())
}

func TestRaceAcrossKill(t *testing.T) {
	s := natstest.Start(t, nil)
	code, out, _ := run(t, 120*time.Second, "race", "--across", s.URL(), "--kill", "2", "--procs", "3", "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var res race.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	k := res.Kill
	if k == nil || k.Kills != 2 || k.Recovered != 2 || k.Final != k.Expected || k.Final == 0 ||
		k.StaleAccepted != 0 || k.LateRefused+k.LateAfterWrite != 2 {
		t.Fatalf("kill result %+v", k)
	}
	// The lock passes to another worker only once the paused holder's
	// lease has expired on the server: about one TTL (1 s) after the pause.
	if k.DetectMsP50 < 500 || k.DetectMsMax > 15000 {
		t.Fatalf("takeover after %.0f ms (median), %.0f ms (max); TTL 1 s", k.DetectMsP50, k.DetectMsMax)
	}
	// The human form names the fence's refusals.
	code, out, _ = run(t, 120*time.Second, "race", "--across", s.URL(), "--kill", "1", "--procs", "2")
	if code != 0 || !strings.Contains(out, "refused by the fence") || !strings.Contains(out, "ok: every death recovered") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	assertNoBuckets(t, s.URL())
}

func TestRaceAcrossErrors(t *testing.T) {
	if code, _, errOut := run(t, 30*time.Second, "race", "--across", "nats://127.0.0.1:1", "--procs", "2", "--iters", "3"); code != exitFailure || errOut == "" {
		t.Fatalf("unreachable server: exit %d, %q", code, errOut)
	}
	if code, _, _ := run(t, 30*time.Second, "race", "--across", "nats://127.0.0.1:1", "--modes", "atomic"); code != exitFailure {
		t.Fatalf("atomic mode across: exit %d", code)
	}
}
