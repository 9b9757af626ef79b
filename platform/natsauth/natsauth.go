// Package natsauth derives, from the event policies in the .proto files,
// who may do what on NATS: each workload connects with its own SVID, the
// server maps the certificate's SPIFFE ID to a user of the same name, and
// that user may publish only the events the workload publishes, consume
// only those it subscribes to, and read only replies sent to its own
// inbox prefix. The embedded server of the local stack and the server
// configuration of containers are both generated here, from one
// definition.
package natsauth

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

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

// Permissions returns what workload may publish and subscribe to.
func Permissions(set *policy.Set, workload string) (*server.Permissions, error) {
	id, err := set.Workload(workload)
	if err != nil {
		return nil, err
	}
	var publish []string
	consumed := map[string][]string{} // publisher → subjects workload consumes
	for e := range set.Events() {
		if e.PublisherName == workload {
			publish = append(publish, e.Subject)
		}
		if e.CheckSubscriber(id) == nil {
			consumed[e.PublisherName] = append(consumed[e.PublisherName], e.Subject)
		}
	}
	if len(publish) > 0 {
		stream := streamName(workload)
		publish = append(publish,
			"$JS.API.STREAM.INFO."+stream,
			"$JS.API.STREAM.CREATE."+stream,
			"$JS.API.STREAM.UPDATE."+stream)
	}
	for _, publisher := range slices.Sorted(maps.Keys(consumed)) {
		publish = append(publish, consumerSubjects(streamName(publisher), workload, consumed[publisher])...)
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: publish},
		Subscribe: &server.SubjectPermission{Allow: []string{InboxPrefix(workload) + ".>"}},
	}, nil
}

// consumerSubjects are the JetStream API subjects that let workload run its
// durable consumer on stream, filtered to subjects, and acknowledge what it
// receives.
func consumerSubjects(stream, workload string, subjects []string) []string {
	out := []string{
		"$JS.API.STREAM.INFO." + stream,
		"$JS.API.CONSUMER.CREATE." + stream + "." + workload,
		"$JS.API.CONSUMER.INFO." + stream + "." + workload,
		"$JS.API.CONSUMER.MSG.NEXT." + stream + "." + workload,
		"$JS.ACK." + stream + "." + workload + ".>",
	}
	for _, s := range subjects {
		out = append(out, "$JS.API.CONSUMER.CREATE."+stream+"."+workload+"."+s)
	}
	return out
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
