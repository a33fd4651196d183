package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap"
)

// bootstrapCommand runs the kubelet's own client TLS bootstrap
// (pkg/kubelet/certificate/bootstrap.LoadClientCert, what the kubelet calls at start when
// --bootstrap-kubeconfig is given and rotation is off) for COUNT nodes named PREFIX<i>, at most
// IN_FLIGHT at once, each writing DIR/<i>/kubelet.conf and DIR/<i>/pki/. It prints one line per
// node, "<i> <milliseconds> ok" or "<i> <milliseconds> error: <why>", then
// "total <milliseconds>": the bootstrap's time in this process, without a process's start.
//
//	kubecp bootstrap BOOTSTRAP_KUBECONFIG DIR COUNT IN_FLIGHT PREFIX
func bootstrapCommand(args []string) error {
	if len(args) != 5 {
		return fmt.Errorf("usage: kubecp bootstrap BOOTSTRAP_KUBECONFIG DIR COUNT IN_FLIGHT PREFIX")
	}
	bootstrapPath, dir, prefix := args[0], args[1], args[4]
	count, err := strconv.Atoi(args[2])
	if err != nil || count < 1 {
		return fmt.Errorf("COUNT %q is not a positive number", args[2])
	}
	inFlight, err := strconv.Atoi(args[3])
	if err != nil || inFlight < 1 {
		return fmt.Errorf("IN_FLIGHT %q is not a positive number", args[3])
	}
	type result struct {
		index   int
		elapsed time.Duration
		err     error
	}
	results := make([]result, count)
	slots := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < count; i++ {
		wg.Add(1)
		slots <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-slots }()
			results[i] = result{index: i}
			results[i].elapsed, results[i].err = bootstrapOne(bootstrapPath, filepath.Join(dir, strconv.Itoa(i)), fmt.Sprintf("%s%d", prefix, i))
		}(i)
	}
	wg.Wait()
	total := time.Since(start)
	sort.Slice(results, func(a, b int) bool { return results[a].index < results[b].index })
	failed := 0
	for _, r := range results {
		if r.err != nil {
			failed++
			fmt.Printf("%d %.3f error: %v\n", r.index, ms(r.elapsed), r.err)
		} else {
			fmt.Printf("%d %.3f ok\n", r.index, ms(r.elapsed))
		}
	}
	fmt.Printf("total %.3f\n", ms(total))
	if failed > 0 {
		return fmt.Errorf("%d of %d bootstraps failed", failed, count)
	}
	return nil
}

// bootstrapOne is one node's bootstrap into root, timed from the call to the kubeconfig written.
func bootstrapOne(bootstrapPath, root, node string) (time.Duration, error) {
	certDir := filepath.Join(root, "pki")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	err := bootstrap.LoadClientCert(ctx, filepath.Join(root, "kubelet.conf"), bootstrapPath, certDir, types.NodeName(node))
	return time.Since(start), err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
