// Package natsauth derives, from the event policies in the .proto files,
// who may do what on NATS: each workload connects with its own SVID, the
// server maps the certificate's SPIFFE ID to a user of the same name, and
// that user may publish only the events the workload publishes, consume
// only those it subscribes to, and read only replies sent to its own
// inbox prefix. The rules come from one definition, [Permissions], which
// [Users] turns into the users of both the embedded server of the local
// stack ([ServerOptions]) and the configuration file of the server run in
// containers ([ConfigFile]).
package natsauth

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"example.com/rampart/platform/identity"
	"example.com/rampart/platform/policy"
)

// streamName is the stream holding a publisher's events; it must agree
// with the events package.
func streamName(workload string) string {
	return "EVENTS_" + strings.ToUpper(strings.ReplaceAll(workload, "-", "_"))
}

// InboxPrefix is the prefix of a workload's reply subjects. Each workload
// gets its own, so that none can read the replies meant for another.
func InboxPrefix(workload string) string {
	return "_INBOX_" + strings.ReplaceAll(workload, "-", "_")
}

// replaysEvents reports whether workload reads events through ephemeral
// consumers, created anew at every start, rather than through one durable
// consumer. Only the gateway does: it keeps no state of its own and
// rebuilds its list of revoked sessions by replaying recent revocations
// (events.Consumer.RunReplay).
func replaysEvents(workload string) bool { return workload == policy.Gateway }

// Permissions returns what workload may do on NATS, derived from the event
// policies in set. Both directions are allow lists: the server refuses
// anything not listed.
//
// A workload may publish the events the policy says it publishes, and
// create and update its own stream. On every stream that holds events it
// may consume, it may run its durable consumer, named after it: create the
// consumer filtered on one of those subjects (with no filter, or several,
// only when it may consume everything the stream's publisher publishes),
// read its state, pull messages and acknowledge them. The gateway instead
// replays recent events at every start: it may create consumers of any
// name on those streams, each filtered on exactly one subject it may
// consume, and pull from them. Every workload may subscribe only below its
// own [InboxPrefix], where replies and pulled messages arrive. A workload
// that the policy gives no event may publish nothing at all.
//
// TODO: NATS permissions name subjects, not request bodies, so some rights
// stay wider than the policy. A workload that creates its consumer chooses
// the rest of its configuration, including a push delivery to any subject
// (consumers then refuse such messages, whose subject and event header
// disagree). A publisher chooses which subjects its stream captures. The
// gateway's rights name consumers by wildcard, so it may also pull from
// another consumer on a stream it reads, if one existed. Closing these
// needs streams and consumers provisioned by an operator, not by the
// workloads.
func Permissions(set *policy.Set, workload string) (*server.Permissions, error) {
	id, err := set.Workload(workload)
	if err != nil {
		return nil, err
	}
	published := map[string][]string{} // publisher → every subject it publishes
	consumed := map[string][]string{}  // publisher → subjects workload consumes
	for e := range set.Events() {
		published[e.PublisherName] = append(published[e.PublisherName], e.Subject)
		if e.CheckSubscriber(id) == nil {
			consumed[e.PublisherName] = append(consumed[e.PublisherName], e.Subject)
		}
	}

	var publish []string
	if own := published[workload]; len(own) > 0 {
		stream := streamName(workload)
		publish = append(publish, own...)
		publish = append(publish,
			"$JS.API.STREAM.CREATE."+stream,
			"$JS.API.STREAM.UPDATE."+stream)
	}
	for _, publisher := range slices.Sorted(maps.Keys(consumed)) {
		stream, subjects := streamName(publisher), consumed[publisher]
		if replaysEvents(workload) {
			publish = append(publish, replaySubjects(stream, subjects)...)
			continue
		}
		whole := len(subjects) == len(published[publisher])
		publish = append(publish, durableSubjects(stream, workload, subjects, whole)...)
	}

	perms := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: publish},
		Subscribe: &server.SubjectPermission{Allow: []string{InboxPrefix(workload) + ".>"}},
	}
	if len(publish) == 0 {
		// To NATS, an empty allow list means no restriction at all.
		perms.Publish = &server.SubjectPermission{Deny: []string{">"}}
	}
	return perms, nil
}

// durableSubjects are the JetStream API subjects that let workload run its
// durable consumer on stream, filtered to subjects, and acknowledge what it
// receives. JetStream refuses a request whose subject names a filter other
// than the consumer's, which is what pins the filter. The request subject
// without a filter, which allows any, is granted only when whole says that
// subjects are everything the stream's publisher publishes.
func durableSubjects(stream, workload string, subjects []string, whole bool) []string {
	consumer := stream + "." + workload
	var out []string
	for _, s := range subjects {
		out = append(out, "$JS.API.CONSUMER.CREATE."+consumer+"."+s)
	}
	if whole {
		out = append(out, "$JS.API.CONSUMER.CREATE."+consumer)
	}
	return append(out,
		"$JS.API.CONSUMER.INFO."+consumer,
		"$JS.API.CONSUMER.MSG.NEXT."+consumer,
		"$JS.ACK."+consumer+".>")
}

// replaySubjects are the JetStream API subjects that let a workload create
// ephemeral consumers of generated names on stream, each filtered on one
// of subjects, and pull from them. Such consumers acknowledge nothing; they
// may not be deleted either, and expire once idle.
func replaySubjects(stream string, subjects []string) []string {
	var out []string
	for _, s := range subjects {
		out = append(out, "$JS.API.CONSUMER.CREATE."+stream+".*."+s)
	}
	return append(out, "$JS.API.CONSUMER.MSG.NEXT."+stream+".*")
}

// Users returns one NATS user per workload, named by its SPIFFE ID so that
// a server with certificate mapping (TLSMap, verify_and_map) finds it.
func Users(set *policy.Set, workloads ...string) ([]*server.User, error) {
	users := make([]*server.User, 0, len(workloads))
	for _, w := range workloads {
		perms, err := Permissions(set, w)
		if err != nil {
			return nil, fmt.Errorf("permissions of %s: %w", w, err)
		}
		id, _ := set.Workload(w)
		users = append(users, &server.User{Username: id.String(), Permissions: perms})
	}
	return users, nil
}

// ServerConfig describes the NATS server that the workloads of a trust
// domain share.
type ServerConfig struct {
	// Policy holds the event policies that permissions come from.
	Policy *policy.Set
	// Workloads are the workloads that may connect. A certificate naming
	// any other SPIFFE ID maps to no user and is refused.
	Workloads []string
	// Identity provides the server's SVID and the bundle that clients'
	// SVIDs must chain to, read at every handshake.
	Identity identity.Source
	// Host is the address to listen on; empty means every interface.
	Host string
	// Port is the client port; 0 means 4222 and server.RANDOM_PORT a free
	// one.
	Port int
	// StoreDir holds JetStream's files.
	StoreDir string
	// ServerName names the server to its clients; empty lets NATS choose.
	ServerName string
}

// ErrNoWorkloads is returned by [ServerOptions] for a configuration that
// lets no workload in.
var ErrNoWorkloads = errors.New("natsauth: no workloads")

// ServerOptions returns the options of a NATS server with JetStream that
// only the workloads of cfg can use, each as itself: every client must
// complete mutual TLS 1.3 with an SVID of the trust domain (see
// [identity.ServerTLSConfig]), the SPIFFE ID of its certificate is its
// user name, and that user's rights are [Permissions]. A client without a
// certificate, with one from another CA, or with an SPIFFE ID that is not
// a listed workload never gets to send a message. The options are meant
// for a server embedded in a process: NATS neither handles signals nor
// logs until the caller sets a logger.
//
// TODO: NATS has no maximum connection age, so a client that connected
// before its CA left the bundle stays connected until it reconnects; only
// new connections see the change.
func ServerOptions(cfg ServerConfig) (*server.Options, error) {
	switch {
	case len(cfg.Workloads) == 0:
		return nil, ErrNoWorkloads
	case cfg.Policy == nil || cfg.Identity == nil:
		return nil, errors.New("natsauth: server options need a policy and an identity")
	}
	users, err := Users(cfg.Policy, cfg.Workloads...)
	if err != nil {
		return nil, err
	}
	return &server.Options{
		ServerName: cfg.ServerName,
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		TLS:        true,
		TLSConfig:  identity.ServerTLSConfig(cfg.Identity),
		TLSVerify:  true,
		TLSMap:     true,
		Users:      users,
		NoSigs:     true,
		NoLog:      true,
	}, nil
}
