package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cri-client/pkg/fake"
)

// serveRuntime serves the CRI's fake runtime and image services (k8s.io/cri-client's, which
// kubemark's hollow nodes use) on the unix socket at path until SIGTERM: what a real kubelet
// needs to start on a machine without a container runtime.
func serveRuntime(path string) error {
	os.Remove(path)
	runtime := fake.NewFakeRemoteRuntime()
	if err := runtime.Start("unix://" + path); err != nil {
		return fmt.Errorf("serving the fake runtime on %s: %w", path, err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	runtime.Stop()
	return nil
}
