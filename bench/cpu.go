package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Pinning modes (Options.Pin).
const (
	// PinAuto pins when the service is spawned, taskset exists and there are at least 2 CPUs:
	// the service on the upper half of the CPUs, the load generator on the lower half.
	PinAuto = "auto"
	// PinOff pins nothing.
	PinOff = "off"
)

// pinning is the CPU placement used for a run.
type pinning struct {
	service, generator string // taskset CPU lists; empty: not pinned
	note               string // what was done, for the reports
}

// planPinning decides the CPU placement. spec is PinAuto, PinOff or "SVC:GEN" (two taskset
// CPU lists, e.g. "1:0" or "2-3:0-1").
func planPinning(spec string, spawned bool) (pinning, error) {
	if spec == PinOff {
		return pinning{note: "none (--pin off)"}, nil
	}
	_, lookErr := exec.LookPath("taskset")
	if spec == PinAuto || spec == "" {
		n := runtime.NumCPU()
		switch {
		case !spawned:
			return pinning{note: "none (the service is not spawned by the bench)"}, nil
		case lookErr != nil:
			return pinning{note: "none (taskset not found)"}, nil
		case n < 2:
			return pinning{note: "none (1 CPU)"}, nil
		}
		half := n / 2
		p := pinning{service: cpuRange(half, n-1), generator: cpuRange(0, half-1)}
		p.note = fmt.Sprintf("service on CPU %s, load generator on CPU %s (taskset)", p.service, p.generator)
		return p, nil
	}
	svc, gen, ok := strings.Cut(spec, ":")
	if !ok || svc == "" || gen == "" {
		return pinning{}, fmt.Errorf("invalid --pin %q: want auto, off or SERVICE_CPUS:GENERATOR_CPUS such as 1:0", spec)
	}
	if lookErr != nil {
		return pinning{}, fmt.Errorf("cannot pin with --pin %s: taskset not found", spec)
	}
	if !spawned {
		return pinning{generator: gen, note: fmt.Sprintf("load generator on CPU %s (taskset); the service is not spawned, so not pinned", gen)}, nil
	}
	return pinning{service: svc, generator: gen, note: fmt.Sprintf("service on CPU %s, load generator on CPU %s (taskset)", svc, gen)}, nil
}

func cpuRange(lo, hi int) string {
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return strconv.Itoa(lo) + "-" + strconv.Itoa(hi)
}

// pinSelf pins every thread of this process to cpus and sizes GOMAXPROCS to them (at least 2,
// for the pacer's own thread: see newPreciseSleep).
func pinSelf(cpus string) error {
	out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cannot pin the load generator to CPU %s: %v: %s", cpus, err, bytes.TrimSpace(out))
	}
	n := 0
	for _, part := range strings.Split(cpus, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, _ := strconv.Atoi(lo)
		b := a
		if isRange {
			b, _ = strconv.Atoi(hi)
		}
		n += b - a + 1
	}
	runtime.GOMAXPROCS(max(n, 2))
	return nil
}

// selfCPU returns the CPU time (user + system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU returns the CPU time (user + system) of process pid, from /proc (0 if unknown).
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	return parseProcCPU(b)
}

// parseProcCPU reads the user and system times (fields 14 and 15, in USER_HZ ticks) of a
// /proc/<pid>/stat (0 if unknown).
func parseProcCPU(b []byte) time.Duration {
	// The command name may hold spaces: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ: /proc reports in 1/100 s on Linux
	return time.Duration(ut+st) * time.Second / clockTicks
}

// procRSS returns the resident and peak resident memory of process pid in bytes (0 if unknown).
func procRSS(pid int) (rss, peak uint64) {
	if pid <= 0 {
		return 0, 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	return parseProcRSS(b)
}

// parseProcRSS reads VmRSS and VmHWM (in kB) of a /proc/<pid>/status, in bytes (0 if absent).
func parseProcRSS(b []byte) (rss, peak uint64) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return rss, peak
}

// hostTimes are the CPU times of the whole machine since boot, from the cpu line of
// /proc/stat, summed over its CPUs.
type hostTimes struct {
	// busy is what all its processes used: user, nice, system, irq and softirq (a guest's
	// time is inside user). Its change minus the bench's and the service's is what other
	// processes took.
	busy time.Duration
	// steal is the time the hypervisor ran something else (another VM, its own work) while
	// this machine's CPUs had work to do. No process here used it, so it is not "other
	// processes": it is the host taking CPU from all of them, and a thread that was due to
	// run waited meanwhile. On a shared VM it is the first suspect of a latency spike.
	steal time.Duration
}

// sub returns the times spent from o to h.
func (h hostTimes) sub(o hostTimes) hostTimes {
	return hostTimes{busy: h.busy - o.busy, steal: h.steal - o.steal}
}

// readHostTimes returns the machine's CPU times (zero if unknown).
func readHostTimes() hostTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostTimes{}
	}
	return parseHostTimes(b)
}

// parseHostTimes reads the cpu line of a /proc/stat:
//
//	cpu  user nice system idle iowait irq softirq steal guest guest_nice
//
// in USER_HZ ticks. Idle and iowait are nobody's; guest and guest_nice are already in user
// and nice.
func parseHostTimes(stat []byte) hostTimes {
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return hostTimes{}
	}
	tick := func(i int) time.Duration {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		const clockTicks = 100
		return time.Duration(n) * time.Second / clockTicks
	}
	h := hostTimes{busy: tick(1) + tick(2) + tick(3) + tick(6) + tick(7)}
	if len(f) > 8 { // kernels before 2.6.11 have no steal column
		h.steal = tick(8)
	}
	return h
}

// cpuModel returns the CPU model name from /proc/cpuinfo ("" if unknown).
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
