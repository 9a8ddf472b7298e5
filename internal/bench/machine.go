package bench

import (
	"bufio"
	"os"
	"runtime"
	"strings"
)

// Machine describes the machine a run measured.
type Machine struct {
	CPU        string `json:"cpu"`    // model name, from /proc/cpuinfo
	NCPU       int    `json:"ncpu"`   // logical CPUs
	Kernel     string `json:"kernel"` // kernel release
	Go         string `json:"go"`     // Go version
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Hostname   string `json:"hostname,omitempty"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// LoadStart and LoadEnd are the load averages (1, 5 and 15 minutes)
	// when the run started and ended: other load skews the numbers.
	LoadStart string `json:"loadavg_start,omitempty"`
	LoadEnd   string `json:"loadavg_end,omitempty"`
}

func machineInfo() Machine {
	m := Machine{
		CPU: cpuModel(), NCPU: runtime.NumCPU(), Kernel: kernelRelease(), Go: runtime.Version(),
		OS: runtime.GOOS, Arch: runtime.GOARCH, GOMAXPROCS: runtime.GOMAXPROCS(0), LoadStart: loadAvg(),
	}
	m.Hostname, _ = os.Hostname()
	return m
}

// cpuModel returns the first model name of /proc/cpuinfo, or the
// architecture where there is none.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name", "Model", "cpu model", "Hardware":
			if v = strings.TrimSpace(v); v != "" {
				return v
			}
		}
	}
	return runtime.GOARCH
}

func kernelRelease() string {
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		return strings.TrimSpace(string(b))
	}
	return unameRelease()
}

// loadAvg returns the three load averages of /proc/loadavg, or "".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// MachineInfo describes this machine, with the load average now as
// LoadStart (for other benchmarks of this module).
func MachineInfo() Machine { return machineInfo() }

// LoadAvg returns the three load averages of /proc/loadavg, or "".
func LoadAvg() string { return loadAvg() }
