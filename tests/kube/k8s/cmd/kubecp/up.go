package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type upOptions struct {
	// --cluster-signing-duration of kube-controller-manager (kubeadm leaves the default, a year).
	signingDuration time.Duration
	// When this process exits, the control plane is stopped (a test binary that dies leaves nothing).
	ownerPid string
}

func parseUpFlags(args []string) (upOptions, error) {
	opts := upOptions{signingDuration: 8760 * time.Hour}
	for i := 0; i < len(args); i++ {
		flag, value, hasValue := strings.Cut(args[i], "=")
		if !hasValue {
			if i+1 >= len(args) {
				return opts, fmt.Errorf("%s needs a value", flag)
			}
			i++
			value = args[i]
		}
		switch flag {
		case "--signing-duration":
			d, err := time.ParseDuration(value)
			if err != nil || d <= 0 {
				return opts, fmt.Errorf("--signing-duration %q is not a positive duration like 10m or 8760h", value)
			}
			opts.signingDuration = d
		case "--owner-pid":
			if _, err := strconv.Atoi(value); err != nil {
				return opts, fmt.Errorf("--owner-pid %q is not a process id", value)
			}
			opts.ownerPid = value
		default:
			return opts, fmt.Errorf("unknown flag %s\n%s", flag, usage)
		}
	}
	return opts, nil
}

// ports the control plane listens on, all on 127.0.0.1.
type ports struct {
	etcdClient, etcdPeer, apiserver, controllerManager int
}

// freePorts asks the kernel for four distinct free ports (held together so none repeats).
func freePorts() (ports, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var nums []int
	for i := 0; i < 4; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return ports{}, err
		}
		ls = append(ls, l)
		nums = append(nums, l.Addr().(*net.TCPAddr).Port)
	}
	return ports{nums[0], nums[1], nums[2], nums[3]}, nil
}

// up starts the control plane in dir and returns once kube-apiserver's /readyz and
// kube-controller-manager's /healthz answer. A port taken between the choice and the bind is
// retried with new ports.
func up(dir string, opts upOptions) error {
	if alive := runningProcesses(dir); len(alive) > 0 {
		return fmt.Errorf("a control plane already runs in %s (%s); run tests/kube/down %s first", dir, strings.Join(alive, ", "), dir)
	}
	start := time.Now()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p, err := freePorts()
		if err != nil {
			return err
		}
		lastErr = startAll(dir, p, opts)
		if lastErr == nil {
			fmt.Fprintf(os.Stderr, "control plane %s up in %s: kube-apiserver at https://127.0.0.1:%d\n", release, time.Since(start).Round(time.Millisecond), p.apiserver)
			fmt.Printf("https://127.0.0.1:%d\n", p.apiserver)
			return nil
		}
		down(dir)
		if !strings.Contains(lastErr.Error(), "address already in use") {
			break
		}
	}
	return lastErr
}

func startAll(dir string, p ports, opts upOptions) error {
	server := fmt.Sprintf("https://127.0.0.1:%d", p.apiserver)
	if err := writePKI(dir, server); err != nil {
		return fmt.Errorf("writing the PKI: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "audit-policy.yaml"), []byte(auditPolicy), 0o644); err != nil {
		return err
	}
	if opts.ownerPid != "" {
		if err := startWatcher(dir, opts.ownerPid); err != nil {
			return err
		}
	}
	etcd, err := startProcess(dir, "etcd", etcdArgs(dir, p)...)
	if err != nil {
		return err
	}
	apiserver, err := startProcess(dir, "kube-apiserver", apiserverArgs(dir, p)...)
	if err != nil {
		return err
	}
	admin, err := adminClient(dir)
	if err != nil {
		return err
	}
	if err := waitHealthy(admin, server+"/readyz", 120*time.Second, etcd, apiserver); err != nil {
		return err
	}
	if err := bindKubeletClient(admin, server); err != nil {
		return err
	}
	cm, err := startProcess(dir, "kube-controller-manager", controllerManagerArgs(dir, p, opts)...)
	if err != nil {
		return err
	}
	anyone := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := waitHealthy(anyone, fmt.Sprintf("https://127.0.0.1:%d/healthz", p.controllerManager), 120*time.Second, etcd, apiserver, cm); err != nil {
		return err
	}
	env := fmt.Sprintf("RELEASE=%s\nSERVER=%s\nETCD=http://127.0.0.1:%d\nCONTROLLER_MANAGER=https://127.0.0.1:%d\nSIGNING_DURATION=%s\n",
		release, server, p.etcdClient, p.controllerManager, opts.signingDuration)
	return os.WriteFile(filepath.Join(dir, "cluster.env"), []byte(env), 0o644)
}

// writePKI writes what kubeadm's certs and kubeconfig phases would (the parts the join touches):
// the cluster CA, kube-apiserver's serving certificate, its kubelet client certificate, the
// front-proxy pair its flags name, the service-account keys, and the kubeconfigs of the admin
// (system:masters) and of kube-controller-manager.
func writePKI(dir, server string) error {
	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	ca, err := newAuthority(pki, "ca", "kubernetes")
	if err != nil {
		return err
	}
	if _, _, err := ca.issue(pki, "apiserver", profile{
		cn:     "kube-apiserver",
		usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		dnsNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		ips: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.96.0.1")},
	}); err != nil {
		return err
	}
	if _, _, err := ca.issue(pki, "apiserver-kubelet-client", profile{
		cn:     "kube-apiserver-kubelet-client",
		usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}
	frontProxy, err := newAuthority(pki, "front-proxy-ca", "front-proxy-ca")
	if err != nil {
		return err
	}
	if _, _, err := frontProxy.issue(pki, "front-proxy-client", profile{
		cn:     "front-proxy-client",
		usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}
	if err := writeServiceAccountKeys(pki); err != nil {
		return err
	}
	clientOnly := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	for _, kc := range []struct{ file, cn, org string }{
		{"admin.conf", "kubernetes-super-admin", "system:masters"},
		{"controller-manager.conf", "system:kube-controller-manager", ""},
	} {
		var orgs []string
		if kc.org != "" {
			orgs = []string{kc.org}
		}
		certPEM, keyPEM, err := ca.issue(pki, strings.TrimSuffix(kc.file, ".conf"), profile{cn: kc.cn, orgs: orgs, usages: clientOnly})
		if err != nil {
			return err
		}
		if err := writeKubeconfig(filepath.Join(dir, kc.file), server, ca, kc.cn, certPEM, keyPEM); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "ca.crt"), certPEMOf(ca.cert.Raw), 0o644)
}

// Request metadata for every request: enough to count requests per user and verb.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

func etcdArgs(dir string, p ports) []string {
	client := fmt.Sprintf("http://127.0.0.1:%d", p.etcdClient)
	peer := fmt.Sprintf("http://127.0.0.1:%d", p.etcdPeer)
	return []string{
		"--name=default",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=default=" + peer,
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}
}

// apiserverArgs are getAPIServerCommand's (cmd/kubeadm/app/phases/controlplane/manifests.go)
// with loopback addresses (so no endpoint reconciler), plain-HTTP etcd on loopback, and an audit log of request metadata.
func apiserverArgs(dir string, p ports) []string {
	pki := func(name string) string { return filepath.Join(dir, "pki", name) }
	return []string{
		"--advertise-address=127.0.0.1",
		"--bind-address=127.0.0.1",
		// The default reconciler refuses a loopback advertise address; the join never reads the
		// kubernetes Service's endpoints.
		"--endpoint-reconciler-type=none",
		fmt.Sprintf("--secure-port=%d", p.apiserver),
		"--allow-privileged=true",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--enable-bootstrap-token-auth=true",
		"--client-ca-file=" + pki("ca.crt"),
		"--tls-cert-file=" + pki("apiserver.crt"),
		"--tls-private-key-file=" + pki("apiserver.key"),
		"--kubelet-client-certificate=" + pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + pki("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--service-cluster-ip-range=10.96.0.0/12",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki("sa.pub"),
		"--service-account-signing-key-file=" + pki("sa.key"),
		"--requestheader-client-ca-file=" + pki("front-proxy-ca.crt"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + pki("front-proxy-client.crt"),
		"--proxy-client-key-file=" + pki("front-proxy-client.key"),
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", p.etcdClient),
		"--audit-policy-file=" + filepath.Join(dir, "audit-policy.yaml"),
		"--audit-log-path=" + filepath.Join(dir, "audit.log"),
		"--audit-log-maxsize=1024",
	}
}

// controllerManagerArgs are getControllerManagerCommand's, with loopback ports, the signing
// duration asked for, and no leader election (one replica).
func controllerManagerArgs(dir string, p ports, opts upOptions) []string {
	pki := func(name string) string { return filepath.Join(dir, "pki", name) }
	kubeconfig := filepath.Join(dir, "controller-manager.conf")
	return []string{
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", p.controllerManager),
		"--leader-elect=false",
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--client-ca-file=" + pki("ca.crt"),
		"--requestheader-client-ca-file=" + pki("front-proxy-ca.crt"),
		"--root-ca-file=" + pki("ca.crt"),
		"--service-account-private-key-file=" + pki("sa.key"),
		"--cluster-signing-cert-file=" + pki("ca.crt"),
		"--cluster-signing-key-file=" + pki("ca.key"),
		"--cluster-signing-duration=" + opts.signingDuration.String(),
		"--use-service-account-credentials=true",
		"--controllers=*,bootstrapsigner,tokencleaner",
	}
}

// startProcess starts bin/NAME in its own session (it outlives this program), its output in
// logs/NAME.log, and records its pid in dir/pids.
func startProcess(dir, name string, args ...string) (*exec.Cmd, error) {
	logFile, err := os.OpenFile(filepath.Join(dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(binDir(), name), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	if err := recordPid(dir, name, cmd.Process.Pid); err != nil {
		return nil, err
	}
	go cmd.Wait()
	return cmd, nil
}

// waitHealthy polls url until it answers 200, failing early when one of procs has exited.
func waitHealthy(client *http.Client, url string, timeout time.Duration, procs ...*exec.Cmd) error {
	deadline := time.Now().Add(timeout)
	for {
		res, err := client.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		for _, p := range procs {
			if p.ProcessState != nil || !alive(p.Process.Pid) {
				return fmt.Errorf("%s exited while starting: %s", filepath.Base(p.Path), logTail(p))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 within %s (last error: %v)", url, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func logTail(p *exec.Cmd) string {
	f, ok := p.Stdout.(*os.File)
	if !ok {
		return ""
	}
	text, _ := os.ReadFile(f.Name())
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "\n")
}

// adminClient is an HTTP client that authenticates with admin.conf's certificate.
func adminClient(dir string) (*http.Client, error) {
	pki := filepath.Join(dir, "pki")
	pair, err := tls.LoadX509KeyPair(filepath.Join(pki, "admin.crt"), filepath.Join(pki, "admin.key"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots},
	}}, nil
}

// bindKubeletClient lets kube-apiserver's kubelet client certificate use the kubelet API, as
// kubeadm's bootstrap-token phase does (kubeadm:apiserver-kubelet-client).
func bindKubeletClient(admin *http.Client, server string) error {
	body := `{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",
"metadata":{"name":"kubeadm:apiserver-kubelet-client"},
"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"system:kubelet-api-admin"},
"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"kube-apiserver-kubelet-client"}]}`
	res, err := admin.Post(server+"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "application/json", bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusConflict {
		return fmt.Errorf("creating ClusterRoleBinding kubeadm:apiserver-kubelet-client: %s", res.Status)
	}
	return nil
}
