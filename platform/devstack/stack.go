package devstack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/devpki"
	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/natsauth"
	"example.com/rampart/platform/policy"

	// The event policies that NATS permissions come from.
	_ "example.com/rampart/proto/order/v1"
	_ "example.com/rampart/proto/payment/v1"
	_ "example.com/rampart/proto/user/v1"
)

// Stack is the running platform.
type Stack struct {
	cfg    Config
	nats   *server.Server
	source *identity.FileSource
	out    io.Writer

	mu    sync.Mutex
	procs map[string]*process
	// Exited receives the name of a workload whose process stopped
	// without being asked to.
	Exited chan string
}

type process struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	stop   bool // set when the stack asked it to stop
}

// Start prepares the PKI and keys, starts NATS and every workload, and
// returns once all of them are ready. On error it stops what it started.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if err := Prepare(cfg); err != nil {
		return nil, err
	}
	s := &Stack{cfg: cfg, out: cfg.Output, procs: map[string]*process{}, Exited: make(chan string, len(Workloads))}
	if s.out == nil {
		s.out = os.Stderr
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Stop(context.WithoutCancel(ctx)))
		}
	}()
	if err := s.startNATS(ctx); err != nil {
		return nil, err
	}
	// Every workload starts at once, then the stack waits for each to be
	// ready: readiness depends on peers (a service is ready once it holds
	// the gateway's keys, the gateway once it found the user service's
	// issuer keys), so no start order would do.
	for _, name := range Workloads {
		if err := s.launch(name); err != nil {
			return nil, err
		}
	}
	for _, name := range Workloads {
		if err := s.waitReady(ctx, name); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Config returns the stack's configuration.
func (s *Stack) Config() Config { return s.cfg }

// NATSServer returns the embedded NATS server.
func (s *Stack) NATSServer() *server.Server { return s.nats }

func (s *Stack) startNATS(ctx context.Context) error {
	td, err := spiffeid.TrustDomainFromString(s.cfg.TrustDomain)
	if err != nil {
		return err
	}
	s.source, err = identity.NewFileSource(ctx, devpki.WorkloadFiles(s.cfg.PKIDir(), "nats"), identity.FileOptions{})
	if err != nil {
		return fmt.Errorf("loading the NATS server's identity: %w", err)
	}
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		return err
	}
	// The same rules as the containers' configuration file: both come
	// from natsauth.
	opts, err := natsauth.ServerOptions(natsauth.ServerConfig{
		Policy:     set,
		Workloads:  Workloads,
		Identity:   s.source,
		Host:       s.cfg.Host,
		Port:       s.cfg.Ports.NATS,
		StoreDir:   filepath.Join(s.cfg.Dir, "nats"),
		ServerName: "rampart-dev",
	})
	if err != nil {
		return err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("configuring NATS: %w", err)
	}
	ns.SetLoggerV2(natsLogger{prefixed(s.out, "nats")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return errors.New("NATS did not become ready")
	}
	s.nats = ns
	return nil
}

// StartWorkload starts one workload's process and waits until it is
// ready. Tests use it to restart a workload they stopped.
func (s *Stack) StartWorkload(ctx context.Context, name string) error {
	if err := s.launch(name); err != nil {
		return err
	}
	return s.waitReady(ctx, name)
}

// launch starts a workload's process.
func (s *Stack) launch(name string) error {
	bin, err := filepath.Abs(filepath.Join(s.cfg.BinDir, name))
	if err != nil {
		return err
	}
	// Not exec.CommandContext: the process outlives the call that starts
	// it, and stops when the stack asks it to. bin is the workload's own
	// binary, from BinDir.
	cmd := exec.Command(bin) //nolint:gosec,noctx // G204, and no context: see above
	cmd.Env = append(inherited(), s.cfg.env(name)...)
	cmd.Stdout = prefixed(s.out, name)
	cmd.Stderr = cmd.Stdout
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, exited: make(chan struct{})}
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
		s.mu.Lock()
		stopped := p.stop
		s.mu.Unlock()
		if !stopped {
			s.Exited <- name
		}
	}()
	return nil
}

// waitReady waits until a launched workload answers /readyz.
func (s *Stack) waitReady(ctx context.Context, name string) error {
	s.mu.Lock()
	p := s.procs[name]
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	if err := waitReady(ctx, "http://"+s.cfg.adminAddr(name)+"/readyz", p.exited); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// StopWorkload asks one workload to stop, as Ctrl-C would, and waits for
// it; after the grace period it is killed.
func (s *Stack) StopWorkload(name string) error {
	s.mu.Lock()
	p := s.procs[name]
	if p != nil {
		p.stop = true
	}
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within 15s and was killed", name)
	}
	var exit *exec.ExitError
	if p.err != nil && !errors.As(p.err, &exit) {
		return fmt.Errorf("%s: %w", name, p.err)
	}
	if exit != nil {
		return fmt.Errorf("%s exited with %w", name, exit)
	}
	return nil
}

// KillWorkload kills one workload at once, with no chance to clean up.
func (s *Stack) KillWorkload(name string) {
	s.mu.Lock()
	p := s.procs[name]
	if p != nil {
		p.stop = true
	}
	s.mu.Unlock()
	if p != nil {
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// Stop stops every workload, the gateway first, then NATS. Each workload
// has the grace period of [Stack.StopWorkload], whatever the context.
func (s *Stack) Stop(_ context.Context) error {
	var errs []error
	for _, name := range slices.Backward(Workloads) {
		errs = append(errs, s.StopWorkload(name))
	}
	if s.nats != nil {
		s.nats.Shutdown()
		s.nats.WaitForShutdown()
	}
	if s.source != nil {
		errs = append(errs, s.source.Close())
	}
	return errors.Join(errs...)
}

// inherited is the stack's own environment minus what would point a
// workload at another source of identity than the stack's PKI: a SPIFFE
// agent socket set in a developer's shell, for instance.
func inherited() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasSuffix(name, identity.EndpointSocketEnv) {
			env = append(env, kv)
		}
	}
	return env
}

// natsLogger passes on the NATS server's warnings and errors, which say
// why a workload was refused, and drops its chatter.
type natsLogger struct{ out io.Writer }

func (l natsLogger) Noticef(string, ...any) {}
func (l natsLogger) Debugf(string, ...any)  {}
func (l natsLogger) Tracef(string, ...any)  {}
func (l natsLogger) Warnf(format string, v ...any) {
	fmt.Fprintf(l.out, "warning: "+format+"\n", v...)
}
func (l natsLogger) Errorf(format string, v ...any) {
	fmt.Fprintf(l.out, "error: "+format+"\n", v...)
}
func (l natsLogger) Fatalf(format string, v ...any) {
	fmt.Fprintf(l.out, "fatal: "+format+"\n", v...)
}

// prefixed returns a writer that copies each line to out behind the
// workload's name.
func prefixed(out io.Writer, name string) io.Writer {
	r, w := io.Pipe()
	go func() {
		scanner := bufio.NewScanner(r)
		scanner.Buffer(make([]byte, 64*1024), 1<<20)
		for scanner.Scan() {
			fmt.Fprintf(out, "%-8s| %s\n", name, scanner.Bytes())
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	return w
}
