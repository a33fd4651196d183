package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The processes a control plane started, one "NAME PID" line each, in start order.
func pidsFile(dir string) string { return filepath.Join(dir, "pids") }

func recordPid(dir, name string, pid int) error {
	f, err := os.OpenFile(pidsFile(dir), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s %d\n", name, pid)
	return err
}

type recorded struct {
	name string
	pid  int
}

func readPids(dir string) []recorded {
	text, err := os.ReadFile(pidsFile(dir))
	if err != nil {
		return nil
	}
	var out []recorded
	for _, line := range strings.Split(string(text), "\n") {
		name, pidText, ok := strings.Cut(strings.TrimSpace(line), " ")
		pid, err := strconv.Atoi(pidText)
		if ok && err == nil {
			out = append(out, recorded{name, pid})
		}
	}
	return out
}

// procStat is /proc/PID/stat's state (field 3) and start time (field 22), or ok=false.
func procStat(pid int) (state string, start string, ok bool) {
	text, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", "", false
	}
	// The command name (field 2) may hold spaces; the fields after its closing parenthesis don't.
	s := string(text)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return "", "", false
	}
	return fields[0], fields[19], true
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z"
}

// ours: pid is alive and was started for dir (its command line names dir), so a recycled pid is
// never signalled.
func ours(dir string, pid int) bool {
	if !alive(pid) {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(cmdline), dir)
}

func runningProcesses(dir string) []string {
	var names []string
	for _, r := range readPids(dir) {
		if ours(dir, r.pid) {
			names = append(names, fmt.Sprintf("%s %d", r.name, r.pid))
		}
	}
	return names
}

// down stops exactly the processes dir/pids records (latest first): SIGTERM, then SIGKILL after
// 15 s. Stopping what already stopped is not an error.
func down(dir string) error {
	self := os.Getpid()
	procs := readPids(dir)
	var signalled []recorded
	for i := len(procs) - 1; i >= 0; i-- {
		r := procs[i]
		if r.pid != self && ours(dir, r.pid) {
			syscall.Kill(r.pid, syscall.SIGTERM)
			signalled = append(signalled, r)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, r := range signalled {
		for alive(r.pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(r.pid) {
			syscall.Kill(r.pid, syscall.SIGKILL)
			for i := 0; i < 100 && alive(r.pid); i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	if err := os.Remove(pidsFile(dir)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// startWatcher starts `kubecp watch DIR PID` in its own session.
func startWatcher(dir, owner string) error {
	if !alive(atoi(owner)) {
		return fmt.Errorf("--owner-pid %s: no such process", owner)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "watch", dir, owner)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return recordPid(dir, "watch", cmd.Process.Pid)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// watchOwner stops the control plane in dir once the owner process has exited (or its pid was
// reused), and exits itself once the control plane was stopped by someone else.
func watchOwner(dir, owner string) error {
	pid := atoi(owner)
	_, born, ok := procStat(pid)
	for ok {
		time.Sleep(500 * time.Millisecond)
		if _, err := os.Stat(pidsFile(dir)); err != nil {
			return nil
		}
		var start string
		var state string
		state, start, ok = procStat(pid)
		ok = ok && state != "Z" && start == born
	}
	return down(dir)
}
