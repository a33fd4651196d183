package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A test kubelet runs on the files bootlet wrote under ROOT, chrooted into ROOT (so that every
// path bootlet wrote, as seen from inside the root, is the path the kubelet reads) in a mount
// namespace of its own (so that what it and the chroot mount vanishes with it), with the fake
// container runtime beside it, at the endpoint the join is given (--cri-socket
// unix:///run/test-kubelet/runtime.sock). Its own files live in ROOT/run/test-kubelet.
const testDir = "/run/test-kubelet"

// The settings a kubelet needs on these test machines and nowhere else, kept apart from what
// bootlet writes: a drop-in of --config-dir (KubeletConfiguration fields) and the flags below.
const testOnlyConfig = `# Test-only settings (tests/kube/k8s/cmd/kubecp/kubelet.go), apart from bootlet's config.yaml.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# These machines are VMs with cgroup v1 hierarchies and swap settings of their own.
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
# Ports of its own, so that several test kubelets run side by side.
address: %s
port: %d
healthzBindAddress: 127.0.0.1
healthzPort: %d
readOnlyPort: 0
`

// The kernel tunables a kubelet sets on start (pkg/kubelet/cm/container_manager_linux.go,
// setupKernelTunables): saved before the first test kubelet starts, put back when the last stops.
var kernelTunables = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// Where the test kubelets of this machine register, for the tunables' save and restore.
const machineDir = "/run/bootlet-test-kubelets"

func kubeletCommand(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("%s", usage)
	}
	switch args[0] {
	case "start":
		if len(args) != 4 {
			return fmt.Errorf("usage: kubecp kubelet start DIR ROOT NAME")
		}
		return startKubelet(args[1], args[2], args[3])
	case "stop":
		if len(args) != 2 {
			return fmt.Errorf("usage: kubecp kubelet stop ROOT")
		}
		return stopKubelet(args[1])
	}
	return fmt.Errorf("unknown kubelet command %q\n%s", args[0], usage)
}

// bootletArgs reads the kubelet command line bootlet's join printed, from the flags file it wrote.
func bootletArgs(root string) ([]string, error) {
	path := filepath.Join(root, "var/lib/kubelet/bootlet-flags.env")
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bootlet's kubelet flags: %w (join the node with the kubelet layout first)", err)
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if value, ok := strings.CutPrefix(line, "KUBELET_BOOTLET_ARGS="); ok {
			return strings.Fields(strings.Trim(value, `"`)), nil
		}
	}
	return nil, fmt.Errorf("%s has no KUBELET_BOOTLET_ARGS line", path)
}

// flagValue is the value of --name=value among args.
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

func startKubelet(dir, root, name string) error {
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "cluster.env")); err != nil {
		return fmt.Errorf("%s holds no control plane started by tests/kube/up: %w", dir, err)
	}
	if chrootedIn(root) {
		return fmt.Errorf("a test kubelet already runs on %s; stop it first (tests/kube/kubelet stop %s)", root, root)
	}
	args, err := bootletArgs(root)
	if err != nil {
		return err
	}
	if got := flagValue(args, "hostname-override"); got != name {
		return fmt.Errorf("bootlet joined %s as %q, not %q", root, got, name)
	}
	address := strings.Split(flagValue(args, "node-ip"), ",")[0]
	if address == "" {
		address = "127.0.0.1"
	}
	state := filepath.Join(root, testDir)
	if err := os.MkdirAll(filepath.Join(state, "config.d"), 0o755); err != nil {
		return err
	}
	p, err := freePorts()
	if err != nil {
		return err
	}
	port, healthz := p.apiserver, p.controllerManager
	config := fmt.Sprintf(testOnlyConfig, address, port, healthz)
	if err := os.WriteFile(filepath.Join(state, "config.d/99-test.conf"), []byte(config), 0o644); err != nil {
		return err
	}
	if err := prepareChroot(root); err != nil {
		return err
	}
	if err := registerMachineKubelet(root); err != nil {
		return err
	}
	script := chrootScript(root, binDir(), append(args, "--config-dir="+testDir+"/config.d"))
	if err := os.WriteFile(filepath.Join(state, "run.sh"), []byte(script), 0o755); err != nil {
		return err
	}
	os.Remove(pidsFile(state))
	logFile, err := os.OpenFile(filepath.Join(state, "kubelet.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", filepath.Join(state, "run.sh"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the kubelet: %w", err)
	}
	if err := recordPid(state, "kubelet", cmd.Process.Pid); err != nil {
		return err
	}
	go cmd.Wait()
	anyone := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := waitHealthy(anyone, fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz), 90*time.Second, cmd); err != nil {
		stopKubelet(root)
		return fmt.Errorf("the kubelet did not become healthy: %w (log: %s)", err, filepath.Join(state, "kubelet.log"))
	}
	fmt.Fprintf(os.Stderr, "kubelet %s up on %s:%d (healthz 127.0.0.1:%d), chrooted in %s\n", name, address, port, healthz, root)
	fmt.Println(port)
	return nil
}

// prepareChroot puts into ROOT what a kubelet reads from a machine's /etc beside bootlet's files
// (users, groups, name resolution, the OS and machine ids it reports) and the directories the
// namespace mounts over.
func prepareChroot(root string) error {
	for _, d := range []string{"proc", "sys", "dev", "tmp", "etc", "bin", "sbin", "lib", "lib64", "usr", testDir[1:] + "/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	for _, f := range []string{"passwd", "group", "resolv.conf", "hosts", "os-release", "machine-id"} {
		text, err := os.ReadFile(filepath.Join("/etc", f))
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(root, "etc", f), text, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// chrootScript mounts, inside the kubelet's own mount namespace, what a chrooted kubelet needs
// (ROOT on itself so that its root directory is a mount point, /proc, /sys, /dev, the host's
// programs read-only, the release's binaries), starts the fake runtime and execs the kubelet.
func chrootScript(root, bin string, kubeletArgs []string) string {
	var b strings.Builder
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	fmt.Fprintf(&b, "set -e\nmount --make-rprivate /\nmount --bind %s %s\n", q(root), q(root))
	fmt.Fprintf(&b, "mount -t proc proc %s/proc\nmount --rbind /sys %s/sys\nmount --rbind /dev %s/dev\n", q(root), q(root), q(root))
	for _, d := range []string{"bin", "sbin", "lib", "lib64", "usr"} {
		fmt.Fprintf(&b, "[ -e /%s ] && mount --bind -o ro /%s %s/%s\n", d, d, q(root), d)
	}
	fmt.Fprintf(&b, "mount --bind -o ro %s %s%s/bin\n", q(bin), q(root), testDir)
	fmt.Fprintf(&b, "chroot %s %s/bin/kubecp runtime %s/runtime.sock > %s%s/runtime.log 2>&1 &\n", q(root), testDir, testDir, q(root), testDir)
	fmt.Fprintf(&b, "for i in $(seq 50); do [ -S %s%s/runtime.sock ] && break; sleep 0.1; done\n", q(root), testDir)
	args := make([]string, len(kubeletArgs))
	for i, a := range kubeletArgs {
		args[i] = q(a)
	}
	fmt.Fprintf(&b, "exec chroot %s %s/bin/kubelet %s\n", q(root), testDir, strings.Join(args, " "))
	return b.String()
}

// stopKubelet stops the test kubelet of ROOT and its runtime (the whole process group), and puts
// the kernel tunables back when it was the machine's last test kubelet.
func stopKubelet(root string) error {
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	state := filepath.Join(root, testDir)
	for _, r := range readPids(state) {
		if !alive(r.pid) || !(rootOf(r.pid) == root || rootOf(r.pid) == "/") {
			continue
		}
		syscall.Kill(-r.pid, syscall.SIGTERM)
		deadline := time.Now().Add(15 * time.Second)
		for alive(r.pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(r.pid) {
			syscall.Kill(-r.pid, syscall.SIGKILL)
		}
	}
	// The runtime, started by the script, shares the kubelet's process group; wait for it too.
	for i := 0; i < 100 && chrootedIn(root); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if chrootedIn(root) {
		return fmt.Errorf("processes chrooted in %s are still running", root)
	}
	os.Remove(pidsFile(state))
	if mounts := mountsUnder(root); len(mounts) > 0 {
		return fmt.Errorf("mounts left under %s: %s", root, strings.Join(mounts, ", "))
	}
	return unregisterMachineKubelet(root)
}

// rootOf is the root directory process pid sees ("" when it is gone).
func rootOf(pid int) string {
	root, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
	return root
}

// chrootedIn: some process runs chrooted in root (the kubelet or its runtime).
func chrootedIn(root string) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && alive(pid) && rootOf(pid) == root {
			return true
		}
	}
	return false
}

func mountsUnder(root string) []string {
	text, _ := os.ReadFile("/proc/self/mounts")
	var out []string
	for _, line := range strings.Split(string(text), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 1 && strings.HasPrefix(fields[1], root+"/") {
			out = append(out, fields[1])
		}
	}
	return out
}

// registerMachineKubelet notes a test kubelet for ROOT; the first one saves the kernel tunables.
func registerMachineKubelet(root string) error {
	return withMachineLock(func() error {
		// Saved once: a file left by a test run that died keeps the values from before it.
		if _, err := os.Stat(filepath.Join(machineDir, "tunables")); os.IsNotExist(err) {
			var saved strings.Builder
			for _, t := range kernelTunables {
				v, err := os.ReadFile(filepath.Join("/proc/sys", t))
				if err == nil {
					fmt.Fprintf(&saved, "%s %s\n", t, strings.TrimSpace(string(v)))
				}
			}
			if err := os.WriteFile(filepath.Join(machineDir, "tunables"), []byte(saved.String()), 0o644); err != nil {
				return err
			}
		}
		return os.WriteFile(filepath.Join(machineDir, machineEntry(root)), []byte(root+"\n"), 0o644)
	})
}

// unregisterMachineKubelet forgets ROOT's kubelet; the last one puts the kernel tunables back.
func unregisterMachineKubelet(root string) error {
	return withMachineLock(func() error {
		os.Remove(filepath.Join(machineDir, machineEntry(root)))
		entries, _ := os.ReadDir(machineDir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "kubelet-") {
				return nil
			}
		}
		text, err := os.ReadFile(filepath.Join(machineDir, "tunables"))
		if err != nil {
			return nil
		}
		for _, line := range strings.Split(strings.TrimSpace(string(text)), "\n") {
			if t, v, ok := strings.Cut(line, " "); ok {
				os.WriteFile(filepath.Join("/proc/sys", t), []byte(v), 0o644)
			}
		}
		return os.Remove(filepath.Join(machineDir, "tunables"))
	})
}

func machineEntry(root string) string {
	return "kubelet-" + strings.ReplaceAll(strings.Trim(root, "/"), "/", "_")
}

func withMachineLock(f func() error) error {
	if err := os.MkdirAll(machineDir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(machineDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	return f()
}
