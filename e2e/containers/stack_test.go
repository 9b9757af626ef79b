package containers

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	dockernetwork "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/e2e/internal/otlpsink"
	"example.com/rampart/e2e/internal/scenario"
	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/devstack"
	"example.com/rampart/platform/natsauth"
	"example.com/rampart/platform/policy"
)

const (
	// suiteVariable turns the suite on; `make e2e` sets it.
	suiteVariable = "RAMPART_CONTAINER_SUITE"
	trustDomain   = "rampart.local"
	// imageUID is the user the images run as.
	imageUID = 65532
	// label marks every container, network and image the suite creates.
	label = "rampart.e2e"
	// abandonedAfter is how old something the suite created must be for a
	// later run to remove it: older than any run lasts, so that a run never
	// removes another that goes on at the same time.
	abandonedAfter = 30 * time.Minute
)

// Ports inside the containers, as the images and the NATS configuration
// set them.
const (
	gatewayHTTP = "8080"
	natsClient  = "4222"
	natsMonitor = "8222"
	otlpGRPC    = "4317"
	traceQuery  = "4318"
)

// workloadPorts are each workload's gRPC and admin ports.
var workloadPorts = map[string]struct{ grpc, admin string }{
	"user":    {"9001", "9101"},
	"order":   {"9002", "9102"},
	"payment": {"9003", "9103"},
	"gateway": {"", "9104"},
}

// stack is the platform the tests run against; nil when the suite is off.
var stack *containerStack

// TestMain starts the platform in containers once, runs the tests, prints
// every container's log if one failed, and removes every container, the
// network and the helper image, whatever happened.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() || os.Getenv(suiteVariable) != "1" {
		os.Exit(m.Run())
	}
	err := errors.Join(
		// The reaper runs from an image that cannot be pulled here; the
		// suite removes what it creates itself.
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true"),
		// Every port is published on 127.0.0.1. Left to itself,
		// testcontainers may take the default route's gateway for the
		// Docker host when the tests run in a container, and aim its
		// readiness checks there.
		os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1"),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "containers: configuring testcontainers:", err)
		os.Exit(1)
	}
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	dir, err := os.MkdirTemp("", "rampart-containers-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "containers:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s := &containerStack{dir: dir, tag: imageTag(), run: strings.ToLower(rand.Text()[:8]),
		containers: map[string]*testcontainers.DockerContainer{}}
	code := 1
	if err := s.start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "containers: starting the platform:", err)
	} else {
		stack = s
		code = m.Run()
	}
	if code != 0 {
		s.printLogs(ctx)
	}
	if err := s.remove(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "containers: removing the platform:", err)
		code = 1
	}
	return code
}

// imageTag is the tag of the images `make images` built.
func imageTag() string {
	if tag := os.Getenv("IMAGE_TAG"); tag != "" {
		return tag
	}
	return "dev"
}

// containerStack is the platform in containers on a network of its own.
// From the host, the tests reach the ports it publishes on 127.0.0.1.
type containerStack struct {
	dir string // PKI, keys, data and NATS configuration of the run
	tag string
	run string // names the helper image of this run
	cfg devstack.Config

	docker     *testcontainers.DockerClient
	network    *testcontainers.DockerNetwork
	probeImage string

	mu         sync.Mutex
	containers map[string]*testcontainers.DockerContainer
	created    []string // names in creation order
}

// start creates everything the platform needs and starts it, returning
// once a call through the gateway reaches every service. What it created
// before an error stays recorded for remove.
func (s *containerStack) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()

	var err error
	if s.docker, err = testcontainers.NewDockerClientWithOpts(ctx); err != nil {
		return fmt.Errorf("connecting to Docker: %w", err)
	}
	if _, err := s.docker.Ping(ctx, client.PingOptions{}); err != nil {
		return fmt.Errorf("no Docker engine reachable: %w", err)
	}
	if err := s.sweep(ctx); err != nil {
		return err
	}
	for _, name := range []string{"nats", "user", "order", "payment", "gateway"} {
		if _, err := s.docker.ImageInspect(ctx, s.image(name)); err != nil {
			return fmt.Errorf("image %s is missing, run `make images`: %w", s.image(name), err)
		}
	}
	if err := s.prepareFiles(); err != nil {
		return err
	}
	s.network, err = network.New(ctx, network.WithLabels(map[string]string{label: "containers"}))
	if err != nil {
		return fmt.Errorf("creating the network: %w", err)
	}

	// The collector and NATS, then every workload at once: each is ready
	// only when its peers are (a service once it holds the gateway's keys,
	// the gateway once it read the issuer's keys from the user service).
	if err := parallel(ctx, s.startCollector, s.startNATS); err != nil {
		return err
	}
	workloads := make([]func(context.Context) error, 0, 4)
	for _, name := range []string{"user", "payment", "order", "gateway"} {
		workloads = append(workloads, func(ctx context.Context) error { return s.startWorkload(ctx, name) })
	}
	if err := parallel(ctx, workloads...); err != nil {
		return err
	}
	return scenario.WaitUntilServing(ctx, s, time.Minute)
}

func parallel(ctx context.Context, fns ...func(context.Context) error) error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() { errs[i] = fn(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *containerStack) image(name string) string { return "rampart/" + name + ":" + s.tag }

// prepareFiles issues the run's PKI and signing keys, renders the NATS
// configuration, and makes the data directories, all owned by the user
// the containers run as.
func (s *containerStack) prepareFiles() error {
	s.cfg = devstack.DefaultConfig()
	s.cfg.Dir, s.cfg.TrustDomain = s.dir, trustDomain
	if err := devstack.Prepare(s.cfg); err != nil {
		return err
	}
	var owned []string
	for _, name := range []string{"nats", "user", "order", "payment", "gateway"} {
		owned = append(owned, filepath.Join(s.cfg.PKIDir(), name))
	}
	owned = append(owned, s.cfg.AccessKeysFile(), s.cfg.TxnKeysFile())
	for _, name := range []string{"nats", "user", "order", "payment"} {
		dir := s.dataDir(name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		owned = append(owned, dir)
	}
	if err := s.writeNATSConfig(); err != nil {
		return err
	}
	owned = append(owned, s.natsConfigFile())
	if os.Getuid() != 0 {
		return nil // the containers run as the owner of the files
	}
	return handOver(s.dir, owned)
}

// handOver gives every file under each of paths, which lie in dir, to the
// user the containers run as. It works inside dir through [os.Root], so
// that a symbolic link cannot lead it elsewhere.
func handOver(dir string, paths []string) (err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, root.Close()) }()
	chown := func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return root.Lchown(p, imageUID, imageUID)
	}
	for _, path := range paths {
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if err := fs.WalkDir(root.FS(), filepath.ToSlash(rel), chown); err != nil {
			return fmt.Errorf("handing %s to the containers' user: %w", path, err)
		}
	}
	return nil
}

// containerUser is the user a container runs as: the image's own, unless
// the tests run as another user than root, whose files the containers
// could not read; then that user.
func containerUser() string {
	if uid := os.Getuid(); uid != 0 {
		return strconv.Itoa(uid) + ":" + strconv.Itoa(os.Getgid())
	}
	return ""
}

func (s *containerStack) dataDir(name string) string { return filepath.Join(s.dir, "data", name) }

func (s *containerStack) natsConfigFile() string { return filepath.Join(s.dir, "nats.conf") }

// writeNATSConfig renders the NATS server's configuration: mutual TLS with
// the run's PKI, and one user per workload with the permissions natsauth
// derives from the event policies.
func (s *containerStack) writeNATSConfig() error {
	td := spiffeid.RequireTrustDomainFromString(trustDomain)
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		return err
	}
	users, err := natsauth.Users(set, devstack.Workloads...)
	if err != nil {
		return err
	}
	text, err := natsauth.ConfigFile{
		Name:     "rampart",
		Listen:   "0.0.0.0:" + natsClient,
		Monitor:  "0.0.0.0:" + natsMonitor,
		StoreDir: "/data",
		CertFile: "/run/rampart/svid/svid.pem",
		KeyFile:  "/run/rampart/svid/svid.key",
		CAFile:   "/run/rampart/bundle.pem",
		Users:    users,
	}.Render()
	if err != nil {
		return err
	}
	return os.WriteFile(s.natsConfigFile(), text, 0o600)
}

// spec is one container to run.
type spec struct {
	name  string
	image string
	// build, when set, builds the image instead.
	build   *testcontainers.FromDockerfile
	cmd     []string
	env     map[string]string
	binds   []string
	publish []string // container ports published on 127.0.0.1
	wait    wait.Strategy
	// keep records the container for the logs and removal at the end;
	// one-shot containers are removed by their caller.
	keep bool
}

// runContainer creates and starts a container on the suite's network,
// hardened as the images are meant to run: read-only root filesystem,
// every capability dropped, no privilege escalation, a non-root user.
func (s *containerStack) runContainer(ctx context.Context, sp spec) (
	*testcontainers.DockerContainer, error) {
	var exposed []string
	for _, p := range sp.publish {
		exposed = append(exposed, p+"/tcp")
	}
	req := testcontainers.GenericContainerRequest{
		Image:          sp.image,
		Cmd:            sp.cmd,
		Env:            sp.env,
		ExposedPorts:   exposed,
		Networks:       []string{s.network.Name},
		NetworkAliases: map[string][]string{s.network.Name: {sp.name}},
		WaitingFor:     sp.wait,
		Labels:         map[string]string{label: "containers"},
		ConfigModifier: func(c *container.Config) { c.User = containerUser() },
		HostConfigModifier: func(hc *container.HostConfig) {
			hc.ReadonlyRootfs = true
			hc.CapDrop = []string{"ALL"}
			hc.SecurityOpt = []string{"no-new-privileges"}
			hc.Binds = sp.binds
			hc.PortBindings = dockernetwork.PortMap{}
			for _, p := range exposed {
				port, err := dockernetwork.ParsePort(p)
				if err == nil {
					hc.PortBindings[port] = []dockernetwork.PortBinding{
						{HostIP: netip.MustParseAddr("127.0.0.1")},
					}
				}
			}
		},
		Started: true,
	}
	if sp.build != nil {
		req.Image, req.FromDockerfile = "", *sp.build
	}
	c, err := testcontainers.GenericContainer(ctx, req)
	dc, _ := c.(*testcontainers.DockerContainer)
	if dc != nil && sp.keep {
		s.mu.Lock()
		s.containers[sp.name] = dc
		s.created = append(s.created, sp.name)
		s.mu.Unlock()
	}
	if err != nil {
		if dc != nil && !sp.keep {
			err = errors.Join(err, dc.Terminate(context.WithoutCancel(ctx)))
		}
		return nil, fmt.Errorf("starting %s: %w", sp.name, err)
	}
	return dc, nil
}

// startCollector builds the helper image from the probe command and runs
// it as the OTLP receiver of the workloads' spans.
func (s *containerStack) startCollector(ctx context.Context) error {
	buildDir := filepath.Join(s.dir, "probe-image")
	if err := os.MkdirAll(buildDir, 0o750); err != nil {
		return err
	}
	//nolint:gosec // G204: the go command, building the suite's own probe into its own directory
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w",
		"-o", filepath.Join(buildDir, "probe"), "./cmd/probe")
	build.Dir = ".." // the e2e module
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the probe: %w\n%s", err, out)
	}
	dockerfile := "FROM scratch\nLABEL " + label + "=containers\nCOPY probe /probe\n" +
		"USER 65532:65532\nENTRYPOINT [\"/probe\"]\n"
	err := os.WriteFile(filepath.Join(buildDir, "Dockerfile"), []byte(dockerfile), 0o600)
	if err != nil {
		return err
	}
	s.probeImage = "rampart/e2e-probe:" + s.run
	_, err = s.runContainer(ctx, spec{
		name: "collector",
		build: &testcontainers.FromDockerfile{
			Context: buildDir, Repo: "rampart/e2e-probe", Tag: s.run, KeepImage: true,
		},
		cmd:     []string{"collect"},
		publish: []string{traceQuery},
		wait:    wait.ForHTTP("/healthz").WithPort(traceQuery + "/tcp").WithForcedIPv4LocalHost(),
		keep:    true,
	})
	return err
}

// startNATS runs NATS with JetStream and the rendered configuration.
func (s *containerStack) startNATS(ctx context.Context) error {
	pki := s.cfg.PKIDir()
	_, err := s.runContainer(ctx, spec{
		name:  "nats",
		image: s.image("nats"),
		binds: []string{
			s.natsConfigFile() + ":/etc/nats/nats.conf:ro",
			filepath.Join(pki, "nats") + ":/run/rampart/svid:ro",
			devpki.WorkloadFiles(pki, "nats").Bundle + ":/run/rampart/bundle.pem:ro",
			s.dataDir("nats") + ":/data",
		},
		publish: []string{natsClient, natsMonitor},
		wait: wait.ForHTTP("/healthz").WithPort(natsMonitor + "/tcp").WithForcedIPv4LocalHost().
			WithStartupTimeout(time.Minute),
		keep: true,
	})
	return err
}

// startWorkload runs one workload with its SVID, its signing keys if it
// has any, and its data directory mounted, configured to reach its peers
// by their network aliases.
func (s *containerStack) startWorkload(ctx context.Context, name string) error {
	prefix := strings.ToUpper(name)
	env := map[string]string{
		prefix + "_TRUST_DOMAIN": trustDomain,
		prefix + "_NATS_URL":     "tls://nats:" + natsClient,
		prefix + "_TXN_KEYS_URL": "https://gateway:9004/.well-known/jwks.json",
		prefix + "_USER_ADDR":    "user:" + workloadPorts["user"].grpc,
		prefix + "_ORDER_ADDR":   "order:" + workloadPorts["order"].grpc,
		prefix + "_PAYMENT_ADDR": "payment:" + workloadPorts["payment"].grpc,
		// The issuer is the user service's admin port.
		"USER_ISSUER":                 "http://user:9101",
		"GATEWAY_ISSUER":              "http://user:9101",
		"GATEWAY_ALLOW_HTTP_ISSUER":   "true",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:" + otlpGRPC,
	}
	maps.Copy(env, scenario.Settings)
	pki := s.cfg.PKIDir()
	binds := []string{
		filepath.Join(pki, name) + ":/run/rampart/svid:ro",
		devpki.WorkloadFiles(pki, name).Bundle + ":/run/rampart/bundle.pem:ro",
	}
	ports := workloadPorts[name]
	publish := []string{ports.admin}
	switch name {
	case "gateway":
		binds = append(binds, s.cfg.TxnKeysFile()+":/run/rampart/keys/gateway-txn.jwks:ro")
		publish = append(publish, gatewayHTTP)
	case "user":
		binds = append(binds, s.cfg.AccessKeysFile()+":/run/rampart/keys/user-access.jwks:ro")
	}
	if ports.grpc != "" {
		binds = append(binds, s.dataDir(name)+":/data")
		publish = append(publish, ports.grpc)
	}
	_, err := s.runContainer(ctx, spec{
		name:    name,
		image:   s.image(name),
		env:     env,
		binds:   binds,
		publish: publish,
		wait: wait.ForHTTP("/readyz").WithPort(ports.admin + "/tcp").WithForcedIPv4LocalHost().
			WithStartupTimeout(time.Minute),
		keep: true,
	})
	return err
}

// printLogs prints the log of every container the suite kept, for a
// failed run.
func (s *containerStack) printLogs(ctx context.Context) {
	s.mu.Lock()
	names := append([]string(nil), s.created...)
	s.mu.Unlock()
	for _, name := range names {
		rc, err := s.containers[name].Logs(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "containers: reading the log of %s: %v\n", name, err)
			continue
		}
		fmt.Fprintf(os.Stderr, "\n--- log of %s ---\n", name)
		scanner := bufio.NewScanner(rc)
		scanner.Buffer(make([]byte, 64<<10), 1<<20)
		for scanner.Scan() {
			fmt.Fprintf(os.Stderr, "%-9s| %s\n", name, scanner.Text())
		}
		rc.Close()
	}
}

// remove removes every container, the network and the helper image.
func (s *containerStack) remove(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var errs []error
	s.mu.Lock()
	names := append([]string(nil), s.created...)
	s.mu.Unlock()
	for _, name := range slices.Backward(names) {
		errs = append(errs, s.containers[name].Terminate(ctx))
	}
	if s.network != nil {
		errs = append(errs, s.network.Remove(ctx))
	}
	if s.docker != nil {
		if s.probeImage != "" {
			_, err := s.docker.ImageRemove(ctx, s.probeImage,
				client.ImageRemoveOptions{Force: true, PruneChildren: true})
			if err != nil && !strings.Contains(err.Error(), "No such image") {
				errs = append(errs, err)
			}
		}
		errs = append(errs, s.docker.Close())
	}
	return errors.Join(errs...)
}

// sweep removes what an earlier run left behind when it was cut short, as
// a timeout does: its containers, networks and helper images.
func (s *containerStack) sweep(ctx context.Context) error {
	filters := client.Filters{}.Add("label", label)
	before := time.Now().Add(-abandonedAfter).Unix()
	var errs []error
	containers, err := s.docker.ContainerList(ctx,
		client.ContainerListOptions{All: true, Filters: filters})
	errs = append(errs, err)
	for _, c := range containers.Items {
		if c.Created < before {
			_, err := s.docker.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
			errs = append(errs, err)
		}
	}
	networks, err := s.docker.NetworkList(ctx, client.NetworkListOptions{Filters: filters})
	errs = append(errs, err)
	for _, n := range networks.Items {
		if n.Created.Unix() < before {
			_, err := s.docker.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
			errs = append(errs, err)
		}
	}
	images, err := s.docker.ImageList(ctx, client.ImageListOptions{Filters: filters})
	errs = append(errs, err)
	for _, i := range images.Items {
		if i.Created < before {
			_, err := s.docker.ImageRemove(ctx, i.ID,
				client.ImageRemoveOptions{Force: true, PruneChildren: true})
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing what an earlier run left: %w", err)
	}
	return nil
}

// hostAddr is where the host reaches a published port of a container.
func (s *containerStack) hostAddr(ctx context.Context, name, port string) string {
	c := s.containers[name]
	mapped, err := c.MappedPort(ctx, port+"/tcp")
	if err != nil {
		return "127.0.0.1:0" // a stopped container: calls fail, as they should
	}
	return "127.0.0.1:" + strconv.Itoa(int(mapped.Num()))
}

func (s *containerStack) GatewayURL() string {
	return "http://" + s.hostAddr(context.Background(), "gateway", gatewayHTTP)
}

func (s *containerStack) TrustDomain() spiffeid.TrustDomain {
	return spiffeid.RequireTrustDomainFromString(trustDomain)
}

func (s *containerStack) PKIDir() string         { return s.cfg.PKIDir() }
func (s *containerStack) AccessKeysFile() string { return s.cfg.AccessKeysFile() }
func (s *containerStack) TxnKeysFile() string    { return s.cfg.TxnKeysFile() }
func (s *containerStack) Issuer() string         { return "http://user:9101" }

func (s *containerStack) GRPCAddr(name string) string {
	return s.hostAddr(context.Background(), name, workloadPorts[name].grpc)
}

func (s *containerStack) NATSURL() string {
	return "tls://" + s.hostAddr(context.Background(), "nats", natsClient)
}

func (s *containerStack) PaymentDB() string {
	return filepath.Join(s.dataDir("payment"), "payment.db")
}

// Trace asks the collector container for the spans of traceID.
func (s *containerStack) Trace(ctx context.Context, traceID string) ([]otlpsink.Span, error) {
	url := "http://" + s.hostAddr(ctx, "collector", traceQuery) + "/traces/" + traceID
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("collector answered %s", resp.Status)
	}
	var spans []otlpsink.Span
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&spans); err != nil {
		return nil, fmt.Errorf("decoding the collector's answer: %w", err)
	}
	return spans, nil
}
