package bench

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ipcgo/ipc"
)

// Target is a goal the measurements are checked against. Status is PASS,
// MISS, or N/A when a measurement it needs is missing.
type Target struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value,omitempty"` // the measured ratio or rate
	Limit  float64 `json:"limit"`
	Status string  `json:"status"`
	Detail string  `json:"detail"`
}

// Target statuses.
const (
	Pass = "PASS"
	Miss = "MISS"
	NA   = "N/A"
)

// The targets.
const (
	SpinFloorFactor   = 2.0  // shm 64 B p50 RTT within this factor of the spin floor
	UnixFactor        = 100. // shm 64 B p50 RTT this many times lower than unix
	ShmMsgsPerS64     = 10e6 // shm one-way messages/s at 64 B
	ShmRingShare1MiB  = 0.5  // shm one-way rate at 1 MiB, as a share of the raw ring's
	KernelRawFactor   = 1.2  // framed kernel transports within this factor of raw
	targetSmall       = 64
	targetLarge       = 1 << 20
	kernelTargetLabel = "within 1.2× of its raw baseline"
)

func verdict(ok bool) string {
	if ok {
		return Pass
	}
	return Miss
}

// need returns the results of transports at size, or a reason why they
// cannot be compared.
func (rep *Report) need(size int, transports ...string) ([]*Result, string) {
	var rs []*Result
	for _, t := range transports {
		r := rep.Find(t, size)
		switch {
		case r == nil:
			return nil, fmt.Sprintf("%s at %s not measured", t, sizeLabel(size))
		case r.Skipped != "":
			return nil, fmt.Sprintf("%s at %s skipped: %s", t, sizeLabel(size), r.Skipped)
		case r.Error != "":
			return nil, fmt.Sprintf("%s at %s failed", t, sizeLabel(size))
		}
		rs = append(rs, r)
	}
	return rs, ""
}

func (rep *Report) checkTargets() []Target {
	var ts []Target
	if slices.Contains(rep.Settings.Transports, ipc.SHM) {
		rep.shmTargets(&ts)
	}
	for _, t := range Transports {
		if t != ipc.SHM {
			rep.kernelTargets(t, &ts)
		}
	}
	return ts
}

// shmTargets checks the shm transport against the spin floor and unix.
func (rep *Report) shmTargets(ts *[]Target) {
	add := func(t Target, rs []*Result, why string, f func([]*Result) (float64, bool, string)) {
		if why != "" {
			t.Status, t.Detail = NA, why
		} else {
			var ok bool
			t.Value, ok, t.Detail = f(rs)
			t.Status = verdict(ok)
		}
		*ts = append(*ts, t)
	}
	rs, why := rep.need(targetSmall, ipc.SHM, SpinBaseline)
	add(Target{Name: "shm 64 B round trip (p50) within 2× of the spin floor (raw-shmspin p50)", Limit: SpinFloorFactor}, rs, why,
		func(rs []*Result) (float64, bool, string) {
			x := round3(float64(rs[0].RTTP50) / float64(rs[1].RTTP50))
			return x, x <= SpinFloorFactor, fmt.Sprintf("%.2f× (shm %s, raw-shmspin %s)", x, ns(rs[0].RTTP50), ns(rs[1].RTTP50))
		})
	rs, why = rep.need(targetSmall, ipc.SHM, ipc.Unix)
	add(Target{Name: "shm 64 B round trip (p50) at least 100× lower than unix", Limit: UnixFactor}, rs, why,
		func(rs []*Result) (float64, bool, string) {
			x := round3(float64(rs[1].RTTP50) / float64(rs[0].RTTP50))
			return x, x >= UnixFactor, fmt.Sprintf("%.1f× (unix %s, shm %s)", x, ns(rs[1].RTTP50), ns(rs[0].RTTP50))
		})
	rs, why = rep.need(targetSmall, ipc.SHM)
	add(Target{Name: "shm 64 B one-way at least 10 M msg/s", Limit: ShmMsgsPerS64}, rs, why,
		func(rs []*Result) (float64, bool, string) {
			x := rs[0].MsgsPerS
			return x, x >= ShmMsgsPerS64, fmt.Sprintf("%s msg/s", rate(x))
		})
	rs, why = rep.need(targetLarge, ipc.SHM, SpinBaseline)
	add(Target{Name: "shm 1 MiB one-way at least half the raw ring's rate", Limit: ShmRingShare1MiB}, rs, why,
		func(rs []*Result) (float64, bool, string) {
			x := round3(rs[0].MsgsPerS / rs[1].MsgsPerS)
			return x, x >= ShmRingShare1MiB, fmt.Sprintf("%.2f× (shm %s, raw ring %s)", x, bytesRate(rs[0].BytesPerS), bytesRate(rs[1].BytesPerS))
		})
}

// kernelTargets checks a framed kernel transport against its baseline at
// every size measured: p50 round trip and throughput.
func (rep *Report) kernelTargets(t string, ts *[]Target) {
	var sizes []int
	for _, r := range rep.Results {
		if r.Transport == t && !slices.Contains(sizes, r.Size) {
			sizes = append(sizes, r.Size)
		}
	}
	if len(sizes) == 0 {
		return // not measured at all
	}
	raw := Baseline(t)
	for _, metric := range []string{"rtt", "tput"} {
		tg := Target{Limit: KernelRawFactor}
		if metric == "rtt" {
			tg.Name = fmt.Sprintf("%s round trip (p50) within %.1f× of %s", t, KernelRawFactor, raw)
		} else {
			tg.Name = fmt.Sprintf("%s throughput within %.1f× of %s", t, KernelRawFactor, raw)
		}
		var parts, missing []string
		worst, ok, any := 0.0, true, false
		for _, size := range sizes {
			rs, why := rep.need(size, t, raw)
			if why != "" {
				missing = append(missing, why)
				continue
			}
			any = true
			var x float64
			var good bool
			if metric == "rtt" {
				x = float64(rs[0].RTTP50) / float64(rs[1].RTTP50)
				good = x <= KernelRawFactor
				worst = max(worst, x)
			} else {
				x = rs[0].MsgsPerS / rs[1].MsgsPerS // framed share of raw: want >= 1/1.2
				good = x >= 1/KernelRawFactor
				if worst == 0 || x < worst {
					worst = x
				}
			}
			ok = ok && good
			mark := ""
			if !good {
				mark = " MISS"
			}
			parts = append(parts, fmt.Sprintf("%s %.2f×%s", sizeLabel(size), x, mark))
		}
		switch {
		case !any:
			tg.Status = NA
			tg.Detail = strings.Join(missing, "; ")
		default:
			tg.Value = round3(worst)
			tg.Status = verdict(ok)
			tg.Detail = strings.Join(parts, ", ")
			if metric == "tput" {
				tg.Detail = "framed/raw msg/s: " + tg.Detail + fmt.Sprintf(" (want ≥ %.2f)", 1/KernelRawFactor)
			} else {
				tg.Detail = "framed/raw p50: " + tg.Detail
			}
			if len(missing) > 0 {
				tg.Detail += "; not compared: " + strings.Join(missing, "; ")
			}
		}
		*ts = append(*ts, tg)
	}
}
