// Command kubecp runs bootlet's reference Kubernetes: a control plane (etcd, kube-apiserver,
// kube-controller-manager) started on free loopback ports with the flags kubeadm's static Pod
// manifests give them, and stopped again by the process ids it recorded. tests/kube/up and
// tests/kube/down call it; it lives beside the binaries tests/kube/build makes.
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// release is the Kubernetes release the binaries beside this one were built from (set by
// tests/kube/build with -X).
var release = "unknown"

const usage = `usage:
  kubecp up DIR [--signing-duration D] [--owner-pid PID]
  kubecp down DIR
  kubecp watch DIR PID     (internal: runs down DIR once PID has exited)
  kubecp kubelet start DIR ROOT NAME
  kubecp kubelet stop ROOT
  kubecp runtime SOCKET    (the fake container runtime a test kubelet starts on)
  kubecp bootstrap BOOTSTRAP_KUBECONFIG DIR COUNT IN_FLIGHT PREFIX
                           (the kubelet's own client TLS bootstrap, timed, for benchmarks)`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("%s", usage)
	}
	if args[0] == "kubelet" {
		return kubeletCommand(args[1:])
	}
	if args[0] == "bootstrap" {
		return bootstrapCommand(args[1:])
	}
	dir, err := filepath.Abs(args[1])
	if err != nil {
		return err
	}
	switch args[0] {
	case "up":
		opts, err := parseUpFlags(args[2:])
		if err != nil {
			return err
		}
		return up(dir, opts)
	case "down":
		return down(dir)
	case "runtime":
		return serveRuntime(dir)
	case "watch":
		if len(args) != 3 {
			return fmt.Errorf("%s", usage)
		}
		return watchOwner(dir, args[2])
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

// binDir is where the release's binaries are: beside this program.
func binDir() string {
	self, err := os.Executable()
	if err != nil {
		return "."
	}
	return filepath.Dir(self)
}
