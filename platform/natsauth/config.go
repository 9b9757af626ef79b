package natsauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats-server/v2/server"
)

// ConfigFile describes the configuration file of a standalone nats-server,
// run from its own binary as in containers, that admits workloads the way
// the embedded server of the local stack does: mutual TLS 1.3 only, a
// client certificate that chains to the trust bundle, and each certificate
// mapped by its SPIFFE ID to the user of the same name with that user's
// permissions. A client whose ID names no user is refused. JetStream is
// always on.
//
// TODO: a file cannot ask nats-server for everything [ServerOptions] does
// in code: the standalone server checks a client's chain against the
// bundle and maps its URI SAN, but not the rest of the SPIFFE rules (a
// leaf that is a CA, or that carries two URIs, issued by our own CA would
// pass), and it offers TLS session tickets, so a session resumed after a
// CA left the bundle is not checked again until the server reloads. An
// image running the platform's own embedded server would close both gaps.
type ConfigFile struct {
	// Name is the server's name, "rampart". Required.
	Name string
	// Listen is the client address, "0.0.0.0:4222". Required.
	Listen string
	// Monitor serves the monitoring endpoints, /healthz among them, over
	// plain HTTP; keep it off any network clients reach. Empty turns it
	// off.
	Monitor string
	// StoreDir is where JetStream keeps its streams. Required.
	StoreDir string
	// CertFile and KeyFile hold the server's SVID, CAFile the trust
	// bundle, as the server will see them. Required.
	CertFile, KeyFile, CAFile string
	// Users are the workloads' users, from [Users]. At least one.
	Users []*server.User
}

// The configuration file, in the JSON form that nats-server reads as well
// as its own syntax. Quoted strings keep subjects such as "$JS.API.>"
// from being taken for variables.
type (
	confFile struct {
		ServerName    string            `json:"server_name"`
		Listen        string            `json:"listen"`
		HTTP          string            `json:"http,omitempty"`
		JetStream     confJetStream     `json:"jetstream"`
		TLS           confTLS           `json:"tls"`
		Authorization confAuthorization `json:"authorization"`
	}
	confJetStream struct {
		StoreDir string `json:"store_dir"`
	}
	confTLS struct {
		CertFile     string `json:"cert_file"`
		KeyFile      string `json:"key_file"`
		CAFile       string `json:"ca_file"`
		VerifyAndMap bool   `json:"verify_and_map"`
		MinVersion   string `json:"min_version"`
	}
	confAuthorization struct {
		Users []confUser `json:"users"`
	}
	confUser struct {
		User        string          `json:"user"`
		Permissions confPermissions `json:"permissions"`
	}
	confPermissions struct {
		Publish   *confSubjects `json:"publish"`
		Subscribe *confSubjects `json:"subscribe"`
	}
	confSubjects struct {
		Allow []string `json:"allow,omitempty"`
		Deny  []string `json:"deny,omitempty"`
	}
)

// Render returns the configuration file of the server c describes. It
// refuses a configuration that lacks a required field; a user with a
// password, or without publish or subscribe permissions, since nats-server
// would let such a user publish or subscribe to anything; and permissions
// with response rules, which this file form does not carry. A permission
// whose allow list is empty is written as a denial of every subject, for
// nats-server reads an absent allow list as "everything".
func (c ConfigFile) Render() ([]byte, error) {
	switch {
	case c.Name == "" || c.Listen == "" || c.StoreDir == "":
		return nil, errors.New("rendering NATS configuration: " +
			"name, listen address and store directory are required")
	case c.CertFile == "" || c.KeyFile == "" || c.CAFile == "":
		return nil, errors.New("rendering NATS configuration: " +
			"certificate, key and CA files are required")
	case len(c.Users) == 0:
		return nil, errors.New("rendering NATS configuration: no users")
	}
	file := confFile{
		ServerName: c.Name,
		Listen:     c.Listen,
		HTTP:       c.Monitor,
		JetStream:  confJetStream{StoreDir: c.StoreDir},
		TLS: confTLS{
			CertFile:     c.CertFile,
			KeyFile:      c.KeyFile,
			CAFile:       c.CAFile,
			VerifyAndMap: true,
			MinVersion:   "1.3",
		},
	}
	for _, u := range c.Users {
		user, err := confUserOf(u)
		if err != nil {
			return nil, fmt.Errorf("rendering NATS configuration: %w", err)
		}
		file.Authorization.Users = append(file.Authorization.Users, user)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // keep ">" a wildcard rather than \u003e
	enc.SetIndent("", "  ")
	if err := enc.Encode(file); err != nil {
		return nil, fmt.Errorf("rendering NATS configuration: %w", err)
	}
	// nats-server knows no \u escapes, which JSON uses for control
	// characters; no file name or subject should hold one.
	if bytes.Contains(out.Bytes(), []byte(`\u`)) {
		return nil, errors.New("rendering NATS configuration: " +
			"a value holds characters the file cannot carry")
	}
	return out.Bytes(), nil
}

func confUserOf(u *server.User) (confUser, error) {
	switch {
	case u == nil || u.Username == "":
		return confUser{}, errors.New("a user without a name")
	case u.Password != "":
		return confUser{}, fmt.Errorf("user %s has a password; workloads authenticate by certificate",
			u.Username)
	case u.Permissions == nil || u.Permissions.Publish == nil || u.Permissions.Subscribe == nil:
		return confUser{}, fmt.Errorf("user %s lacks publish or subscribe permissions", u.Username)
	case u.Permissions.Response != nil:
		return confUser{}, fmt.Errorf("user %s has response permissions, which are not rendered",
			u.Username)
	}
	return confUser{
		User: u.Username,
		Permissions: confPermissions{
			Publish:   confSubjectsOf(u.Permissions.Publish),
			Subscribe: confSubjectsOf(u.Permissions.Subscribe),
		},
	}, nil
}

func confSubjectsOf(p *server.SubjectPermission) *confSubjects {
	if len(p.Allow) > 0 {
		return &confSubjects{Allow: p.Allow, Deny: p.Deny}
	}
	if slices.Contains(p.Deny, ">") {
		return &confSubjects{Deny: p.Deny}
	}
	return &confSubjects{Deny: append([]string{">"}, p.Deny...)}
}
