package workload

import (
	"log/slog"

	"example.com/rampart/platform/jwks"
	"path/filepath"
	"strings"
	"time"
)

// Config is what every workload is configured with. [DefaultConfig] gives
// values that work for local development from the repository root; [Load]
// overrides them with environment variables prefixed by the workload's name
// in capitals (ORDER_GRPC_ADDR for the order workload).
type Config struct {
	// Name is the workload's name: the path of its SPIFFE ID, the prefix
	// of its environment variables, the service name in its telemetry.
	Name string

	TrustDomain string `env:"TRUST_DOMAIN"`
	// GRPCAddr is where the workload serves gRPC with mutual TLS; empty
	// for a workload that serves no gRPC (the gateway).
	GRPCAddr string `env:"GRPC_ADDR"`
	// AdminAddr serves /healthz, /readyz and /metrics over plain HTTP, for
	// probes and scrapers; keep it off the public network.
	AdminAddr string `env:"ADMIN_ADDR"`
	// CertFile, KeyFile and BundleFile hold the workload's X.509 SVID, its
	// key and the trust bundle. They are reloaded when they change.
	CertFile   string `env:"SVID_CERT"`
	KeyFile    string `env:"SVID_KEY"`
	BundleFile string `env:"TRUST_BUNDLE"`
	// WorkloadAPIAddr is the SPIFFE Workload API endpoint of a SPIRE
	// agent, "unix:///run/spire/agent.sock".
	// When set, the SVID and bundle come from it, renewed as it pushes
	// them, and the three files above are not read. [Load] takes it from
	// SPIFFE_ENDPOINT_SOCKET, which every SPIFFE library reads, unless
	// the prefixed variable is set.
	WorkloadAPIAddr string `env:"SPIFFE_ENDPOINT_SOCKET"`
	// NATSURL is the NATS server, reached with mutual TLS; empty means the
	// workload does not use events.
	NATSURL string `env:"NATS_URL"`
	// TxnKeysURL is the gateway's JWKS of transaction-token keys, fetched
	// over mutual TLS.
	TxnKeysURL string `env:"TXN_KEYS_URL"`
	// DataDir holds the workload's own files, such as its database.
	DataDir string `env:"DATA_DIR"`
	// LogLevel is the least severe level logged.
	LogLevel slog.Level `env:"LOG_LEVEL"`
	// RateLimit and RateBurst bound each principal's calls: a sustained
	// rate per second and a burst.
	RateLimit float64 `env:"RATE_LIMIT"`
	RateBurst int     `env:"RATE_BURST"`
	// ShutdownTimeout bounds a graceful shutdown.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT"`

	// TxnKeys, when set, verifies transaction tokens instead of the keys
	// fetched from TxnKeysURL: the gateway uses its own signing keys.
	TxnKeys jwks.KeySource
}

// Local development defaults shared by every workload.
const (
	DefaultTrustDomain = "rampart.local"
	DefaultPKIDir      = ".dev/pki"
	DefaultNATSURL     = "tls://127.0.0.1:4222"
	DefaultTxnKeysURL  = "https://127.0.0.1:9004/.well-known/jwks.json"
)

// DefaultConfig returns the local development configuration of the
// workload name, serving gRPC on grpcAddr and its admin port on adminAddr.
func DefaultConfig(name, grpcAddr, adminAddr string) Config {
	return Config{
		Name:            name,
		TrustDomain:     DefaultTrustDomain,
		GRPCAddr:        grpcAddr,
		AdminAddr:       adminAddr,
		CertFile:        filepath.Join(DefaultPKIDir, name, "svid.pem"),
		KeyFile:         filepath.Join(DefaultPKIDir, name, "svid.key"),
		BundleFile:      filepath.Join(DefaultPKIDir, "bundle.pem"),
		NATSURL:         DefaultNATSURL,
		TxnKeysURL:      DefaultTxnKeysURL,
		DataDir:         filepath.Join(".dev", "data"),
		LogLevel:        slog.LevelInfo,
		RateLimit:       20,
		RateBurst:       40,
		ShutdownTimeout: 10 * time.Second,
	}
}

// EnvPrefix is the prefix of the workload's environment variables.
func (c Config) EnvPrefix() string {
	return strings.ToUpper(strings.ReplaceAll(c.Name, "-", "_"))
}
