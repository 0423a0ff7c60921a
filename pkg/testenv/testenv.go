package testenv

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1/crd"
	"github.com/pullpass/pullpass/pkg/registryclient"
)

// Environment variables read by Start.
const (
	// AssetsEnv names the directory holding kube-apiserver (and etcd, if it is there rather than
	// on the PATH). The default is the harness's cache, ${PULLPASS_CACHE:-/var/cache/pullpass}/kube/VERSION,
	// VERSION being the k8s.io/kubernetes of hack/tools/kube/go.mod.
	AssetsEnv = "PULLPASS_KUBE_ASSETS"
	// KeepEnv, when set, keeps the control plane's directory (certificates, logs, etcd data) and
	// prints where it is when the control plane stops.
	KeepEnv = "PULLPASS_TESTENV_KEEP"
)

// BuildCommand builds the kube-apiserver Start needs into the default assets directory.
const BuildCommand = "KUBE_BINARIES=kube-apiserver hack/build-kube.sh (make unit runs it)"

// Config says how to start a control plane. The zero value is ready to use.
type Config struct {
	// AssetsDir holds kube-apiserver; empty means $PULLPASS_KUBE_ASSETS, then the harness's cache.
	AssetsDir string
	// Etcd is the etcd binary; empty means AssetsDir/etcd if it exists, else etcd on the PATH
	// (Debian's etcd-server package).
	Etcd string
	// APIServerFlags are added to kube-apiserver's ("--name=value"); one naming a flag Start
	// sets replaces Start's value.
	APIServerFlags []string
	// StartTimeout bounds the start, CRD installed; 0 means 2 minutes (a loaded 2-core machine).
	StartTimeout time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if c.StartTimeout == 0 {
		c.StartTimeout = 2 * time.Minute
	}
	if c.AssetsDir == "" {
		c.AssetsDir = os.Getenv(AssetsEnv)
	}
	if c.AssetsDir == "" {
		dir, err := defaultAssetsDir()
		if err != nil {
			return c, fmt.Errorf("finding kube-apiserver: %w; set %s to the directory that holds it", err, AssetsEnv)
		}
		c.AssetsDir = dir
	}
	if _, err := os.Stat(filepath.Join(c.AssetsDir, "kube-apiserver")); err != nil {
		return c, fmt.Errorf("no kube-apiserver in %s (%s or the harness's cache): build it with %s", c.AssetsDir, AssetsEnv, BuildCommand)
	}
	if c.Etcd == "" {
		c.Etcd = filepath.Join(c.AssetsDir, "etcd")
		if _, err := os.Stat(c.Etcd); err != nil {
			path, err := exec.LookPath("etcd")
			if err != nil {
				return c, errors.New("no etcd on the PATH nor in the assets directory: install it with `apt-get install etcd-server` (make unit does)")
			}
			c.Etcd = path
		}
	}
	return c, nil
}

// defaultAssetsDir is the cache hack/build-kube.sh builds into, for the Kubernetes version
// pinned in hack/tools/kube/go.mod, found from the working directory (a package of this module).
func defaultAssetsDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "hack/tools/kube/go.mod"))
		if err == nil {
			m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\S+)`).FindSubmatch(b)
			if m == nil {
				return "", fmt.Errorf("no k8s.io/kubernetes version in %s/hack/tools/kube/go.mod", dir)
			}
			cache := os.Getenv("PULLPASS_CACHE")
			if cache == "" {
				cache = "/var/cache/pullpass"
			}
			return filepath.Join(cache, "kube", string(m[1])), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no hack/tools/kube/go.mod above the working directory")
		}
		dir = parent
	}
}

// Env is a running control plane: etcd and kube-apiserver on loopback, the Registry CRD
// installed. Its clients act as a cluster admin (group system:masters).
type Env struct {
	// Config reaches the API server as an admin; copy it (rest.CopyConfig) before changing it.
	Config *rest.Config
	// Kube is a client of the built-in APIs.
	Kube kubernetes.Interface
	// Registries is a client of pullpass.io/v1alpha1 Registry objects.
	Registries *registryclient.Client
	// Dir holds the certificates, the processes' logs (etcd.log, kube-apiserver.log) and etcd's
	// data; Stop removes it unless PULLPASS_TESTENV_KEEP is set.
	Dir string

	ca        *authority
	spawner   *spawner
	etcd      *process
	apiserver *process
}

// Start starts etcd and kube-apiserver with fresh state on free loopback ports and installs the
// Registry CRD. Stop it with Stop. Most tests share one per package through Shared instead.
func Start(ctx context.Context, cfg Config) (*Env, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	// Other control planes run on this machine: a port found free may be taken before our
	// process binds it, so a start that lost that race is tried again on other ports.
	for attempt := 1; ; attempt++ {
		e, err := start(ctx, cfg)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return e, err
		}
	}
}

func start(ctx context.Context, cfg Config) (_ *Env, err error) {
	removeStaleDirs()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("control plane directory: %w", err)
	}
	e := &Env{Dir: dir, spawner: newSpawner()}
	defer func() {
		if err != nil {
			_ = e.stop(false)
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return nil, fmt.Errorf("control plane directory: %w", err)
	}
	if e.ca, err = newAuthority(); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	apiURL := fmt.Sprintf("https://127.0.0.1:%d", ports[2])

	e.etcd, err = e.spawner.start("etcd", cfg.Etcd, []string{
		"--name=testenv", "--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=testenv=" + peerURL,
		"--unsafe-no-fsync", // test data: speed over durability
	}, filepath.Join(dir, "etcd.log"))
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, e.etcd, &http.Client{Timeout: 5 * time.Second}, etcdURL+"/health"); err != nil {
		return nil, err
	}

	files, err := e.writeAPIServerFiles()
	if err != nil {
		return nil, err
	}
	flags := map[string]string{
		"etcd-servers":                     etcdURL,
		"bind-address":                     "127.0.0.1",
		"advertise-address":                "127.0.0.1",
		"endpoint-reconciler-type":         "none", // 127.0.0.1 is refused as an endpoint
		"secure-port":                      fmt.Sprint(ports[2]),
		"cert-dir":                         filepath.Join(dir, "apiserver"),
		"tls-cert-file":                    files["serving.crt"],
		"tls-private-key-file":             files["serving.key"],
		"client-ca-file":                   files["ca.crt"],
		"service-account-issuer":           apiURL,
		"service-account-key-file":         files["sa.pub"],
		"service-account-signing-key-file": files["sa.key"],
		"service-cluster-ip-range":         "10.0.0.0/24",
		"authorization-mode":               "RBAC",
		// No controller-manager makes default service accounts: pods are admitted without.
		"disable-admission-plugins": "ServiceAccount",
		"allow-privileged":          "true",
		"profiling":                 "false",
	}
	for _, f := range cfg.APIServerFlags {
		name, value, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
		flags[name] = value
	}
	var args []string
	for _, name := range slices.Sorted(maps.Keys(flags)) {
		args = append(args, "--"+name+"="+flags[name])
	}
	e.apiserver, err = e.spawner.start("kube-apiserver", filepath.Join(cfg.AssetsDir, "kube-apiserver"), args, filepath.Join(dir, "kube-apiserver.log"))
	if err != nil {
		return nil, err
	}

	if e.Config, err = e.UserConfig("pullpass-testenv-admin", "system:masters"); err != nil {
		return nil, err
	}
	e.Config.Host = apiURL
	tlsCfg, err := rest.TLSConfigFor(e.Config)
	if err != nil {
		return nil, fmt.Errorf("admin TLS config: %w", err)
	}
	if err := waitReady(ctx, e.apiserver, &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}, apiURL+"/readyz"); err != nil {
		return nil, err
	}
	if e.Kube, err = kubernetes.NewForConfig(e.Config); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if e.Registries, err = registryclient.New(e.Config); err != nil {
		return nil, err
	}
	if err := e.InstallCRD(ctx, crd.Registries); err != nil {
		return nil, err
	}
	return e, nil
}

// writeAPIServerFiles writes the CA, the serving certificate and the service account keys.
func (e *Env) writeAPIServerFiles() (map[string]string, error) {
	certPEM, keyPEM, err := e.ca.issue("kube-apiserver", nil, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for name, data := range map[string][]byte{"ca.crt": e.ca.certPEM, "serving.crt": certPEM, "serving.key": keyPEM} {
		files[name] = filepath.Join(e.Dir, name)
		if err := os.WriteFile(files[name], data, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	if files["sa.key"], files["sa.pub"], err = writeServiceAccountKeys(e.Dir); err != nil {
		return nil, err
	}
	return files, nil
}

// UserConfig returns a config that reaches the API server as user name in groups, with a client
// certificate from the control plane's CA: for tests of what RBAC lets a component do.
func (e *Env) UserConfig(name string, groups ...string) (*rest.Config, error) {
	certPEM, keyPEM, err := e.ca.issue(name, groups, nil, nil)
	if err != nil {
		return nil, err
	}
	host := ""
	if e.Config != nil {
		host = e.Config.Host
	}
	return &rest.Config{
		Host: host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: e.ca.certPEM, CertData: certPEM, KeyData: keyPEM,
		},
		// Tests make bursts of requests; client-side throttling would only slow them down.
		QPS: 1000, Burst: 2000,
	}, nil
}

// ServiceAccountConfig returns a config that RBAC sees as the service account namespace/name,
// with the groups the API server gives service accounts: to test what a chart's Role grants.
func (e *Env) ServiceAccountConfig(namespace, name string) (*rest.Config, error) {
	return e.UserConfig("system:serviceaccount:"+namespace+":"+name,
		"system:serviceaccounts", "system:serviceaccounts:"+namespace)
}

// CAPool returns the pool that trusts the API server's serving certificate.
func (e *Env) CAPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.cert)
	return pool
}

// Stop stops kube-apiserver and etcd and removes Dir (unless PULLPASS_TESTENV_KEEP is set).
func (e *Env) Stop() error { return e.stop(os.Getenv(KeepEnv) != "") }

func (e *Env) stop(keep bool) error {
	if e == nil || e.spawner == nil {
		return nil
	}
	err := errors.Join(e.apiserver.stop(20*time.Second), e.etcd.stop(10*time.Second))
	e.spawner.close()
	e.spawner = nil
	if keep {
		fmt.Fprintf(os.Stderr, "testenv: kept %s (%s set)\n", e.Dir, KeepEnv)
		return err
	}
	return errors.Join(err, os.RemoveAll(e.Dir))
}

const (
	dirPrefix = "pullpass-testenv-"
	ownerFile = "owner.pid" // the test process's pid
)

// removeStaleDirs removes the directories of control planes whose test process was killed
// (etcd's data alone is over 100 MB): those whose owner is no longer running. Directories of
// running tests, this machine's other users' included, are left alone.
func removeStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // being created, or not ours
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}

// freePorts returns n ports that were free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer func() { _ = l.Close() }() // held until all are chosen, so the n ports differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitReady polls url until it answers 200, p exits, or ctx ends.
func waitReady(ctx context.Context, p *process, client *http.Client, url string) error {
	var last error
	for {
		if err := p.running(); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err != nil {
			last = err
		} else {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s answers %s", url, resp.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready (%w): %w\n%s", p.name, last, ctx.Err(), p.tail(30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
